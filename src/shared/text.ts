/** Escapes text for literal use inside a regular expression. */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Text as PostgreSQL can store it: its text type refuses NUL, so a NUL
 * (a model or a client can produce one) becomes U+FFFD, like the lone
 * surrogates toWellFormed replaces.
 */
export function storableText(text: string): string {
  return text.toWellFormed().replaceAll("\u0000", "\uFFFD");
}
