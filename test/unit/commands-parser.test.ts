import { describe, expect, it } from "vitest";
import { z } from "zod";
import { helpFor, helpOverview, usageOf } from "../../src/commands/help.ts";
import { editDistance, parseCommand } from "../../src/commands/parser.ts";
import {
  MAX_COMMAND_LENGTH_CHARS,
  quoteArgument,
  tokenize,
  type Token,
} from "../../src/commands/tokenize.ts";
import type {
  AnyCommand,
  CommandDefinition,
  CommandReply,
  ParseResult,
} from "../../src/commands/types.ts";

// Sample definitions shaped like the real ones (positionals, options, enums,
// a verbatim rest, a secret, an optional word), so these tests need no service.

function define<Args extends Record<string, unknown>>(
  definition: Omit<CommandDefinition<Args>, "run">,
): AnyCommand {
  const run = (): Promise<CommandReply> => Promise.resolve({ text: "ok" });
  return { ...definition, run } as AnyCommand;
}

const keyShow = define({
  words: ["key"],
  summary: "Show which key each provider uses",
  positional: [],
  schema: z.object({}),
  permission: "anyone",
  examples: ["key"],
});

const agentCreate = define({
  words: ["agent", "create"],
  summary: "Create an agent",
  description: "The agent joins rooms it is invited to.",
  positional: [{ name: "name" }],
  schema: z.object({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9-]*$/, "lower-case letters, digits and dashes")
      .describe("Short name, used in the agent's Matrix id"),
    displayName: z.string().min(1).max(40).optional().describe("Name shown in rooms"),
    model: z.string().optional().describe("Model id"),
    temperature: z.coerce.number().min(0).max(2).default(0.7).describe("Sampling temperature"),
  }),
  permission: "admin",
  examples: ["agent create ada", 'agent create ada display-name="Ada Lovelace" model=gpt-4o'],
});

const agentSet = define({
  words: ["agent", "set"],
  summary: "Change how an agent behaves",
  positional: [{ name: "name" }],
  schema: z.object({
    name: z.string(),
    trigger: z.enum(["mentions", "always", "never"]).optional().describe("When it answers"),
    memoryScope: z.enum(["shared", "room", "person"]).optional(),
  }),
  permission: "admin",
  examples: ["agent set ada trigger=always"],
});

const agentInstruct = define({
  words: ["agent", "instruct"],
  summary: "Replace an agent's instructions",
  positional: [{ name: "name" }, { name: "instructions", rest: true }],
  schema: z.object({
    name: z.string(),
    instructions: z.string().min(1).max(8000).describe("What the agent should do"),
    append: z.stringbool().optional().describe("Add to the instructions instead"),
  }),
  permission: "admin",
  examples: ["agent instruct ada You are terse."],
});

const keySet = define({
  words: ["key", "set"],
  summary: "Use your own provider key",
  positional: [{ name: "provider" }, { name: "key", rest: true }],
  schema: z.object({
    provider: z.enum(["openai", "anthropic"]).describe("Which provider"),
    key: z.string().min(8).describe("The API key"),
  }),
  permission: "admin",
  examples: ["key set openai sk-…"],
  secret: true,
});

const help = define({
  words: ["help"],
  summary: "List commands, or explain one",
  positional: [{ name: "topic", rest: true }],
  schema: z.object({ topic: z.string().optional().describe("A command or a group") }),
  permission: "anyone",
  examples: ["help", "help agent create"],
});

const COMMANDS: readonly AnyCommand[] = [
  keyShow,
  agentCreate,
  agentSet,
  agentInstruct,
  keySet,
  help,
];

function parse(text: string): ParseResult {
  return parseCommand(text, COMMANDS);
}

function argsOf(text: string): Record<string, unknown> {
  const result = parse(text);
  if (result.kind !== "command")
    throw new Error(`expected a command, got ${JSON.stringify(result)}`);
  return result.args;
}

function problemsOf(text: string): readonly string[] {
  const result = parse(text);
  if (result.kind !== "invalid") throw new Error(`expected invalid, got ${JSON.stringify(result)}`);
  return result.problems;
}

function values(line: string): (string | [string, string])[] {
  const result = tokenize(line);
  if (!result.ok) throw new Error(result.error);
  return result.tokens.map((t: Token) => (t.key === null ? t.value : [t.key, t.value]));
}

describe("tokenize", () => {
  it("splits on any whitespace, including no-break spaces and newlines", () => {
    expect(values("  agent\tcreate\u00a0ada\nnow  ")).toEqual(["agent", "create", "ada", "now"]);
  });

  it("reads double and single quoted strings as one token, with escapes in double quotes", () => {
    expect(values(`say "hello world" "Ada"'s "a \\"quote\\" and \\\\"`)).toEqual([
      "say",
      "hello world",
      "Ada's",
      'a "quote" and \\',
    ]);
    expect(values(String.raw`"C:\temp\new"`)).toEqual([String.raw`C:\temp\new`]);
    expect(values(`'no \\" escapes'`)).toEqual([`no \\" escapes`]);
  });

  it("accepts the curly quotes phones type", () => {
    expect(values("name=“Ada Lovelace” ‘two words’")).toEqual([
      ["name", "Ada Lovelace"],
      "two words",
    ]);
  });

  it("keeps quotes inside a word literal, so apostrophes need no quoting", () => {
    expect(values("O'Brien don't say=it's")).toEqual(["O'Brien", "don't", ["say", "it's"]]);
  });

  it("reads key=value as an option, with quoted or empty values", () => {
    expect(values(`instructions="be brief" model=gpt-4o url=http://x/?a=b empty= e2=""`)).toEqual([
      ["instructions", "be brief"],
      ["model", "gpt-4o"],
      ["url", "http://x/?a=b"],
      ["empty", ""],
      ["e2", ""],
    ]);
  });

  it("treats a quoted or non-identifier key=value as a plain word", () => {
    expect(values(`"a=b" =x 1a=b`)).toEqual(["a=b", "=x", "1a=b"]);
  });

  it("reports an unclosed quote with its position, counting characters as people do", () => {
    const result = tokenize(`say 👩‍👩‍👧 "never closed`);
    expect(result).toEqual({
      ok: false,
      error: 'the quote " at position 7 is never closed (add " where the quoted text ends)',
    });
  });

  it("rejects control characters other than tab and newline, naming them", () => {
    expect(tokenize("a\u0007b")).toEqual({
      ok: false,
      error: "control character U+0007 at position 2 is not allowed",
    });
    expect(tokenize("a\u009bb").ok).toBe(false);
    expect(tokenize("a\tb\r\nc").ok).toBe(true);
  });

  it("limits the length", () => {
    expect(tokenize("a".repeat(MAX_COMMAND_LENGTH_CHARS)).ok).toBe(true);
    expect(tokenize("a".repeat(MAX_COMMAND_LENGTH_CHARS + 1))).toEqual({
      ok: false,
      error: `the message is 4001 characters long; commands are limited to ${MAX_COMMAND_LENGTH_CHARS}`,
    });
  });

  it("keeps emoji, right-to-left text and combining marks intact", () => {
    expect(values(`👍🏽 שלום "e\u0301te ٱلسلام" 🇫🇷`)).toEqual([
      "👍🏽",
      "שלום",
      "e\u0301te ٱلسلام",
      "🇫🇷",
    ]);
  });

  it("quotes an argument only when it must", () => {
    expect(quoteArgument("ada")).toBe("ada");
    expect(quoteArgument("O'Brien")).toBe("O'Brien");
    expect(quoteArgument("")).toBe('""');
    expect(quoteArgument("two words")).toBe('"two words"');
    expect(quoteArgument("a=b")).toBe('"a=b"');
    expect(quoteArgument(`'x`)).toBe(`"'x"`);
    expect(quoteArgument(`say "hi" \\ now`)).toBe(`"say \\"hi\\" \\\\ now"`);
  });
});

describe("parseCommand: matching", () => {
  it("reports empty and whitespace-only messages as empty", () => {
    expect(parse("")).toEqual({ kind: "empty" });
    expect(parse(" \n\t\u00a0")).toEqual({ kind: "empty" });
  });

  it("matches the longest run of leading words, case-insensitively", () => {
    const create = parse("Agent CREATE ada");
    expect(create.kind === "command" && create.command).toBe(agentCreate);
    const set = parse("KEY Set openai abcdefgh");
    expect(set.kind === "command" && set.command).toBe(keySet);
    const show = parse("key");
    expect(show.kind === "command" && show.command).toBe(keyShow);
  });

  it("fills positionals, then options in kebab, camel or snake case, through the schema", () => {
    expect(argsOf("agent create ada")).toEqual({ name: "ada", temperature: 0.7 });
    for (const key of ["display-name", "displayName", "display_name", "DISPLAY-NAME"]) {
      expect(argsOf(`agent create ada ${key}="Ada Lovelace" temperature=0.2`)).toEqual({
        name: "ada",
        displayName: "Ada Lovelace",
        temperature: 0.2,
      });
    }
    expect(argsOf("agent create model=gpt-4o ada")).toMatchObject({ name: "ada", model: "gpt-4o" });
  });

  it("takes a rest positional verbatim: quotes, apostrophes, inner spacing and newlines kept", () => {
    expect(argsOf(`agent instruct ada You are "terse", always.`)).toEqual({
      name: "ada",
      instructions: `You are "terse", always.`,
    });
    expect(argsOf("agent instruct ada   'Tis  the  season\n- be kind\n\n")).toEqual({
      name: "ada",
      instructions: "'Tis  the  season\n- be kind",
    });
    expect(argsOf("agent instruct ada mode=x means nothing here")).toMatchObject({
      instructions: "mode=x means nothing here",
    });
  });

  it("reads known options where the rest would begin, and nothing after it starts", () => {
    expect(argsOf("agent instruct ada append=yes Also be kind. append=no")).toEqual({
      name: "ada",
      append: true,
      instructions: "Also be kind. append=no",
    });
  });

  it("takes a secret key verbatim", () => {
    expect(argsOf(`key set openai sk-abc"def'ghi=jkl`)).toEqual({
      provider: "openai",
      key: `sk-abc"def'ghi=jkl`,
    });
  });

  it("leaves an optional rest out when nothing follows", () => {
    expect(argsOf("help")).toEqual({});
    expect(argsOf("HELP   agent create  ")).toEqual({ topic: "agent create" });
  });
});

describe("parseCommand: unknown commands", () => {
  it.each([
    ["agent creat", "agent create"],
    ["agnet create ada display-name=x", "agent create"],
    ["agent instrcut ada be nice", "agent instruct"],
    ["hlep", "help"],
    ["kye set openai", "key set"],
  ])("suggests the closest command for %j", (text, suggestion) => {
    const result = parse(text);
    expect(result.kind).toBe("unknown");
    expect(result.kind === "unknown" && result.suggestion).toBe(suggestion);
  });

  it("suggests nothing when nothing is close, and echoes the words typed", () => {
    expect(parse("deploy the whole thing")).toEqual({
      kind: "unknown",
      input: "deploy the",
      suggestion: null,
    });
    expect(parse("model=gpt-4o")).toEqual({
      kind: "unknown",
      input: "model=gpt-4o",
      suggestion: null,
    });
  });

  it("bounds what it echoes", () => {
    const result = parse("x".repeat(10_000));
    expect(result.kind === "unknown" && result.input.length).toBeLessThanOrEqual(81);
  });
});

describe("parseCommand: invalid arguments", () => {
  it("names a missing required argument and gives the usage", () => {
    expect(parse("agent create")).toEqual({
      kind: "invalid",
      command: agentCreate,
      problems: ["name: required"],
      usage: "agent create <name> [display-name=…] [model=…] [temperature=…]",
    });
    expect(problemsOf("agent instruct ada   ")).toEqual(["instructions: required"]);
  });

  it("names the allowed values of an enum", () => {
    expect(problemsOf("agent set ada trigger=sometimes memory-scope=global")).toEqual([
      'trigger: must be one of mentions, always, never (got "sometimes")',
      'memory-scope: must be one of shared, room, person (got "global")',
    ]);
    expect(problemsOf("key set azure abcdefghij")).toEqual([
      'provider: must be one of openai, anthropic (got "azure")',
    ]);
  });

  it("names fields as the user types them, with the schema's message", () => {
    expect(problemsOf(`agent create Ada display-name="${"x".repeat(41)}"`)).toEqual([
      "name: lower-case letters, digits and dashes",
      "display-name: Too big: expected string to have <=40 characters",
    ]);
  });

  it("says which type was expected, echoing what was given", () => {
    expect(problemsOf("agent create ada temperature=hot")).toEqual([
      'temperature: must be a number (got "hot")',
    ]);
  });

  it("rejects too many positional arguments", () => {
    expect(problemsOf(`agent create ada lovelace "the first"`)).toEqual([
      'too many arguments: did not expect "lovelace", "the first" (it takes: name)',
    ]);
  });

  it("rejects an unknown option, listing the known ones", () => {
    expect(problemsOf("agent create ada colour=blue")).toEqual([
      'unknown option "colour" (options: display-name, model, temperature); to pass text containing "=", put it in quotes',
    ]);
    expect(problemsOf("key x=1")).toEqual([
      'unknown option "x" (this command takes no options); to pass text containing "=", put it in quotes',
    ]);
  });

  it("rejects a positional given as an option and an option given twice", () => {
    expect(problemsOf("agent create name=ada model=a model=b")).toEqual([
      'name: write it without "name=", in its place in the usage',
      "model: given more than once",
      "name: required",
    ]);
  });

  it("reports an unclosed quote in the arguments", () => {
    expect(problemsOf(`agent create ada display-name="Ada`)).toEqual([
      'the quote " at position 31 is never closed (add " where the quoted text ends)',
    ]);
  });

  it("reports overlong messages and control characters for a known command", () => {
    expect(problemsOf(`agent instruct ada ${"x".repeat(MAX_COMMAND_LENGTH_CHARS)}`)[0]).toMatch(
      /limited to 4000/,
    );
    expect(problemsOf("agent create ada\u0000")).toEqual([
      "control character U+0000 at position 17 is not allowed",
    ]);
  });
});

describe("usage and help", () => {
  it("derives usage lines from the definitions", () => {
    expect(COMMANDS.map(usageOf)).toEqual([
      "key",
      "agent create <name> [display-name=…] [model=…] [temperature=…]",
      "agent set <name> [trigger=mentions|always|never] [memory-scope=shared|room|person]",
      "agent instruct <name> [append=…] <instructions…>",
      "key set <provider> <key…>",
      "help [topic…]",
    ]);
  });

  it("lists commands by group, hiding admin-only ones from non-admins", () => {
    const forAdmins = helpOverview(COMMANDS, { isAdmin: true });
    expect(forAdmins).toContain(
      "**agent**\n- `agent create <name>`: Create an agent\n- `agent set <name>`",
    );
    expect(forAdmins).toContain(
      "**key**\n- `key`: Show which key each provider uses\n- `key set <provider> <key…>`: Use",
    );
    expect(forAdmins).toContain("Send `help <command>` for details, e.g. `help agent create`.");

    const forMembers = helpOverview(COMMANDS, { isAdmin: false });
    expect(forMembers).toContain("**key**\n- `key`: Show which key each provider uses\n\n");
    expect(forMembers).toContain("`help [topic…]`");
    expect(forMembers).not.toContain("agent create");
    expect(forMembers).not.toContain("key set");
    expect(forMembers).not.toContain("**agent**");
    expect(helpOverview([], { isAdmin: true })).toBe("No commands are available to you.");
  });

  it("explains a command: usage, description, every argument, allowed values, defaults, examples", () => {
    const text = helpFor(COMMANDS, ["agent", "create"]) ?? "";
    expect(text).toContain("**agent create**: Create an agent");
    expect(text).toContain(
      "Usage: `agent create <name> [display-name=…] [model=…] [temperature=…]`",
    );
    expect(text).toContain("The agent joins rooms it is invited to.");
    expect(text).toContain("- `name` (required): Short name, used in the agent's Matrix id");
    expect(text).toContain("- `display-name` (optional): Name shown in rooms");
    expect(text).toContain("- `model` (optional): Model id");
    expect(text).toContain("- `temperature` (optional, default 0.7): Sampling temperature");
    for (const example of agentCreate.examples) expect(text).toContain(`- \`${example}\``);
    expect(text).toContain("Only tenant admins can run this command.");

    const set = helpFor(COMMANDS, ["AGENT", "set", "ada"]) ?? "";
    expect(set).toContain(
      "- `trigger` (optional): When it answers. One of `mentions`, `always`, `never`.",
    );
    expect(set).toContain("- `memory-scope` (optional): One of `shared`, `room`, `person`.");

    const key = helpFor(COMMANDS, ["key", "set"]) ?? "";
    expect(key).toContain("- `key` (required, the rest of the line, as typed): The API key");
    expect(key).toContain("removes it from the room");
  });

  it("lists a group's commands, related commands, and nothing for unknown words", () => {
    const group = helpFor(COMMANDS, ["Agent"]) ?? "";
    expect(group).toContain("- `agent create <name>`: Create an agent\n");
    expect(group).toContain("- `agent instruct <name> <instructions…>`: Replace");
    expect(group).toContain("Send `help agent <command>` for details.");
    const withRelated = helpFor(COMMANDS, ["key"]) ?? "";
    expect(withRelated).toContain("**key**: Show which key each provider uses");
    expect(withRelated).toContain("Related commands:\n- `key set <provider> <key…>`: Use your own");
    expect(helpFor(COMMANDS, ["deploy"])).toBeNull();
    expect(helpFor(COMMANDS, [])).toBeNull();
  });

  it("mentions every argument and example of every command in its help", () => {
    for (const command of COMMANDS) {
      const text = helpFor(COMMANDS, command.words) ?? "";
      for (const positional of command.positional) expect(text).toContain(`\`${positional.name}\``);
      for (const example of command.examples) expect(text).toContain(example);
      const schema = command.schema as z.ZodObject;
      for (const field of Object.keys(schema.shape)) {
        expect(text).toContain(`\`${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}\``);
      }
    }
  });
});

describe("editDistance", () => {
  it("counts insertions, deletions, substitutions and transpositions", () => {
    expect(editDistance("help", "help")).toBe(0);
    expect(editDistance("hlep", "help")).toBe(1);
    expect(editDistance("agent creat", "agent create")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(editDistance("x".repeat(5000), "help", 3)).toBe(4);
  });
});
