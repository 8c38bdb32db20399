import type { ToolDefinition } from "../models/types.ts";

/** Tools through which a model writes to memory during a turn. */
export const REMEMBER_TOOL: ToolDefinition = {
  name: "remember",
  description:
    "Store a durable fact worth knowing in later conversations (preferences, circumstances, decisions). " +
    "Not for small talk. A fact with the same key replaces the older one.",
  parameters: {
    type: "object",
    properties: {
      about: {
        type: "string",
        enum: ["person", "room"],
        description:
          "Whether the fact is about the person you are talking to or about this room/team.",
      },
      key: {
        type: "string",
        description: "Short attribute name, e.g. 'favourite colour', 'employer'.",
      },
      content: {
        type: "string",
        description: "The fact as a complete sentence in the third person.",
      },
    },
    required: ["about", "content"],
  },
};

export const FORGET_TOOL: ToolDefinition = {
  name: "forget",
  description:
    "Forget stored facts about the person you are talking to that match the given words, when they ask you to.",
  parameters: {
    type: "object",
    properties: {
      matching: { type: "string", description: "Words identifying the fact(s) to forget." },
    },
    required: ["matching"],
  },
};

export const MEMORY_TOOLS: readonly ToolDefinition[] = [REMEMBER_TOOL, FORGET_TOOL];

export type MemoryToolCall =
  | {
      readonly name: "remember";
      readonly about: "person" | "room";
      readonly key: string | null;
      readonly content: string;
    }
  | { readonly name: "forget"; readonly matching: string };

const MAX_TOOL_TEXT_CHARS = 1_000;

/** Validates a model's tool call; null when it is not a well-formed memory call. */
export function parseMemoryToolCall(
  name: string,
  args: Readonly<Record<string, unknown>>,
): MemoryToolCall | null {
  const text = (value: unknown): string | null =>
    typeof value === "string" && value.trim() !== ""
      ? value.trim().slice(0, MAX_TOOL_TEXT_CHARS)
      : null;
  if (name === "remember") {
    const content = text(args.content);
    if (content === null) return null;
    return {
      name,
      about: args.about === "room" ? "room" : "person",
      key: text(args.key)?.toLowerCase() ?? null,
      content,
    };
  }
  if (name === "forget") {
    const matching = text(args.matching);
    return matching === null ? null : { name, matching };
  }
  return null;
}
