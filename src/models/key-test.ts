import type { ModelProvider } from "./types.ts";

/**
 * Proves a key works with the smallest real call: a few tokens of output.
 * Resolves when the provider answers; throws ModelFailure otherwise.
 */
export async function testModelKey(provider: ModelProvider, model: string): Promise<void> {
  for await (const event of provider.stream({
    model,
    system: "Reply with the single word OK.",
    messages: [{ role: "user", content: "ping" }],
    temperature: 0,
    maxTokens: 16,
  })) {
    if (event.type === "done") return;
  }
}
