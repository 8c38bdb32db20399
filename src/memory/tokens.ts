/**
 * Rough token arithmetic for budgeting prompts. Real tokenizers differ per
 * model; about four characters per token holds well enough for English chat
 * text to keep a prompt inside its window, which is all a budget needs.
 */
export const CHARS_PER_TOKEN = 4;

/** Approximate number of model tokens `text` costs (never negative, 0 for ""). */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}
