import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { parseCommand } from "../../src/commands/parser.ts";
import { quoteArgument, tokenize } from "../../src/commands/tokenize.ts";
import type { AnyCommand, CommandDefinition, CommandReply } from "../../src/commands/types.ts";

// Permissive schemas (any string), so a round trip tests quoting and
// tokenizing alone, not validation.
function define<Args extends Record<string, unknown>>(
  definition: Omit<CommandDefinition<Args>, "run">,
): AnyCommand {
  const run = (): Promise<CommandReply> => Promise.resolve({ text: "ok" });
  return { ...definition, run } as AnyCommand;
}

const agentCreate = define({
  words: ["agent", "create"],
  summary: "Create an agent",
  positional: [{ name: "name" }],
  schema: z.object({
    name: z.string(),
    displayName: z.string().optional(),
    model: z.string().optional(),
  }),
  permission: "admin",
  examples: [],
});

const agentInstruct = define({
  words: ["agent", "instruct"],
  summary: "Replace an agent's instructions",
  positional: [{ name: "name" }, { name: "instructions", rest: true }],
  schema: z.object({ name: z.string(), instructions: z.string() }),
  permission: "admin",
  examples: [],
});

const help = define({
  words: ["help"],
  summary: "Explain",
  positional: [{ name: "topic", rest: true }],
  schema: z.object({ topic: z.string().optional() }),
  permission: "anyone",
  examples: [],
});

const COMMANDS = [agentCreate, agentInstruct, help];
const KINDS = ["command", "unknown", "invalid", "empty"];

const TRICKY_CHARS = ['"', "'", "“", "”", "‘", "’", "\\", "=", " ", "\t", "\n", "\r", "a", "é"];
const tricky = fc.constantFrom(...TRICKY_CHARS, "\u0000", "\u0085", "👩‍👩‍👧", "\u202e", "\ud800");
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const anyChar = fc.oneof(fc.string({ unit: "binary", maxLength: 1 }), tricky, loneSurrogate);

const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.string({ unit: "grapheme", maxLength: 300 }),
  // Deeply nested and interleaved quotes and escapes.
  fc.string({ unit: tricky, maxLength: 300 }),
  fc.string({ unit: anyChar, maxLength: 300 }),
);
const prefix = fc.constantFrom(
  "",
  "agent create ",
  "agent create ada ",
  "agent instruct ada ",
  "AGENT instrcut ",
  "help ",
  "display-name=",
);

function checkResult(text: string): void {
  const result = parseCommand(text, COMMANDS);
  expect(KINDS).toContain(result.kind);
  if (result.kind === "invalid") {
    expect(result.problems.length).toBeGreaterThan(0);
    expect(result.usage).not.toBe("");
  }
  if (result.kind === "unknown") expect(result.input.length).toBeLessThanOrEqual(200);
  if (result.kind === "command") expect(COMMANDS).toContain(result.command);
}

describe("parseCommand on arbitrary input", () => {
  it("never throws and always gives one of the four kinds", () => {
    fc.assert(
      fc.property(prefix, anyText, (head, tail) => {
        checkResult(head + tail);
        expect(() => tokenize(head + tail)).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });

  it("copes with messages of around 10,000 characters", () => {
    const long = fc.oneof(
      fc.string({ unit: anyChar, minLength: 9_000, maxLength: 10_000 }),
      fc.string({ unit: tricky, minLength: 9_000, maxLength: 10_000 }),
      fc.string({ unit: "grapheme-ascii", minLength: 3_000, maxLength: 4_000 }),
    );
    fc.assert(
      fc.property(prefix, long, (head, tail) => {
        checkResult(head + tail);
      }),
      { numRuns: 60 },
    );
  });
});

/** Any text but control characters other than tab, newline and carriage return. */
const wellFormed = fc
  .string({ unit: fc.oneof(fc.string({ unit: "binary", maxLength: 1 }), tricky), maxLength: 120 })
  .filter((s) => !/[\p{Cc}--[\t\n\r]]/v.test(s));
const separator = fc
  .array(fc.constantFrom(" ", "\t", "\n", "\u00a0", "\u3000"), { minLength: 1, maxLength: 3 })
  .map((s) => s.join(""));
const keyStyle = fc.constantFrom<(kebab: string, camel: string) => string>(
  (kebab) => kebab,
  (_kebab, camel) => camel,
  (kebab) => kebab.replace(/-/g, "_"),
  (kebab) => kebab.toUpperCase(),
);

describe("formatting a command line and parsing it back", () => {
  it("gives back every positional and option value", () => {
    const options = fc.record({ displayName: wellFormed, model: wellFormed }, { requiredKeys: [] });
    fc.assert(
      fc.property(
        wellFormed,
        options,
        fc.boolean(),
        keyStyle,
        separator,
        (name, given, optionsFirst, style, space) => {
          const parts = [quoteArgument(name)];
          if (given.displayName !== undefined) {
            parts.push(
              `${style("display-name", "displayName")}=${quoteArgument(given.displayName)}`,
            );
          }
          if (given.model !== undefined) parts.push(`model=${quoteArgument(given.model)}`);
          if (optionsFirst) parts.reverse();
          const line = ["agent", "create", ...parts].join(space);

          const result = parseCommand(line, COMMANDS);
          expect(result).toEqual({
            kind: "command",
            command: agentCreate,
            args: { name, ...given },
          });
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("gives back a rest argument exactly as typed", () => {
    const instructions = wellFormed.filter((s) => s.trim() === s && s !== "");
    fc.assert(
      fc.property(wellFormed, instructions, separator, (name, text, space) => {
        const line = ["agent", "instruct", quoteArgument(name), text].join(space);
        const result = parseCommand(line, COMMANDS);
        expect(result).toEqual({
          kind: "command",
          command: agentInstruct,
          args: { name, instructions: text },
        });
      }),
      { numRuns: 1000 },
    );
  });
});
