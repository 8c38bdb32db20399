import { z } from "zod";
import type { ModelProvider } from "../models/types.ts";
import type { Agent } from "./types.ts";

/** At most this many facts are taken from one exchange. */
const MAX_EXTRACTED_FACTS = 5;
const MAX_EXTRACTED_FACT_CHARS = 300;

export const EXTRACTION_INSTRUCTIONS =
  "Extract durable facts the person stated about themselves in this exchange (preferences, circumstances, plans), " +
  'as a JSON array of objects {"key": short attribute name, "content": the fact as one sentence in the third person}. ' +
  "Only facts worth remembering next week. Reply with the JSON array only; [] when there is nothing.";

const extractedSchema = z
  .array(
    z.object({
      key: z.string().trim().min(1).max(100).nullish(),
      content: z.string().trim().min(3).max(MAX_EXTRACTED_FACT_CHARS),
    }),
  )
  .max(20);

export interface ExtractedFact {
  readonly key: string | null;
  readonly content: string;
}

/**
 * The optional extraction step after a turn: asks the agent's model which
 * facts the person stated and returns the well-formed ones. Anything
 * malformed yields nothing; the caller treats failures as "no facts".
 */
export async function extractFacts(
  provider: ModelProvider,
  agent: Agent,
  said: string,
  answered: string,
): Promise<ExtractedFact[]> {
  let text = "";
  for await (const event of provider.stream({
    model: agent.model,
    system: EXTRACTION_INSTRUCTIONS,
    messages: [
      { role: "user", content: `The person said:\n${said}\n\nThe agent answered:\n${answered}` },
    ],
    temperature: 0,
    maxTokens: 512,
  })) {
    if (event.type === "text") text += event.delta;
  }
  return parseExtractedFacts(text);
}

export function parseExtractedFacts(text: string): ExtractedFact[] {
  const start = text.indexOf("[");
  const end = text.lastIndexOf("]");
  if (start === -1 || end < start) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.slice(start, end + 1));
  } catch {
    return [];
  }
  const result = extractedSchema.safeParse(parsed);
  if (!result.success) return [];
  return result.data
    .slice(0, MAX_EXTRACTED_FACTS)
    .map((fact) => ({ key: fact.key?.toLowerCase() ?? null, content: fact.content }));
}
