import { z } from "zod";
import type { AnyCommand } from "./types.ts";

/**
 * Usage lines and help text, derived only from command definitions (words,
 * positional list, schema fields and their `.describe()` text, examples), so
 * help cannot drift from what the parser accepts.
 */

/** One argument of a command as help and the parser see it. */
export interface ArgumentInfo {
  /** The schema field, e.g. `displayName`. */
  readonly field: string;
  /** How the user writes it, e.g. `display-name`. */
  readonly flag: string;
  readonly positional: boolean;
  readonly rest: boolean;
  readonly optional: boolean;
  readonly description: string | null;
  /** Allowed values when the field is an enum or literal, else null. */
  readonly values: readonly string[] | null;
  /** The default applied when it is left out, as text, else null. */
  readonly defaultText: string | null;
}

/** `displayName` → `display-name`. */
export function kebabCase(field: string): string {
  return field
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .replace(/_/g, "-")
    .toLowerCase();
}

/**
 * The command's arguments: positionals in order, then the other fields of an
 * object schema in declaration order. A schema that is not an object (or a
 * transform of one) contributes nothing beyond the positionals.
 */
export function argumentsOf(command: AnyCommand): readonly ArgumentInfo[] {
  const shape = objectShape(command.schema);
  const positionalNames = new Set<string>(command.positional.map((p) => p.name));
  const positionals = command.positional.map((p) =>
    describeField(p.name, shape?.[p.name], true, p.rest === true),
  );
  const options = Object.entries(shape ?? {})
    .filter(([field]) => !positionalNames.has(field))
    .map(([field, schema]) => describeField(field, schema, false, false));
  return [...positionals, ...options];
}

/**
 * One line, e.g. `agent create <name> [display-name=…] [model=…]`. Options
 * come before a `rest` argument, because once the rest begins everything is
 * taken verbatim.
 */
export function usageOf(command: AnyCommand): string {
  const args = argumentsOf(command);
  const parts = [
    ...command.words,
    ...args.filter((a) => a.positional && !a.rest).map(formatArgument),
    ...args.filter((a) => !a.positional).map(formatArgument),
    ...args.filter((a) => a.rest).map(formatArgument),
  ];
  return parts.join(" ");
}

/**
 * The list of commands, grouped by first word, one line each. Admin-only
 * commands are hidden from non-admins: they cannot run them, and the list
 * stays short.
 */
export function helpOverview(
  commands: readonly AnyCommand[],
  options: { readonly isAdmin: boolean },
): string {
  const visible = commands.filter((c) => options.isAdmin || c.permission !== "admin");
  const first = visible[0];
  if (first === undefined) return "No commands are available to you.";

  const groups = new Map<string, AnyCommand[]>();
  for (const command of visible) {
    const group = command.words[0] ?? "";
    groups.set(group, [...(groups.get(group) ?? []), command]);
  }
  const sections = [...groups].map(([group, members]) => {
    const lines = members.map((c) => `- \`${shortUsageOf(c)}\`: ${c.summary}`);
    return [`**${group}**`, ...lines].join("\n");
  });
  // A multi-word example shows that `help` takes the whole command name.
  const example = visible.find((c) => c.words.length > 1) ?? first;
  const footer = `Send \`help <command>\` for details, e.g. \`help ${example.words.join(" ")}\`.`;
  return ["**Commands**", ...sections, footer].join("\n\n");
}

/**
 * Help for the command the words name (the longest matching prefix, case
 * insensitive, so `help agent create ada` works) followed by the commands
 * whose names extend it, or just that list when the words name only a group
 * (`help agent`). Null when the words name nothing.
 */
export function helpFor(commands: readonly AnyCommand[], words: readonly string[]): string | null {
  const wanted = words.map((w) => w.toLowerCase());
  const command = longestMatch(commands, wanted);
  const prefix = command === null ? wanted : command.words.map((w) => w.toLowerCase());
  const longer = commands.filter(
    (c) =>
      prefix.length > 0 &&
      c.words.length > prefix.length &&
      prefix.every((w, i) => c.words[i]?.toLowerCase() === w),
  );
  const list = longer.map((c) => `- \`${shortUsageOf(c)}\`: ${c.summary}`).join("\n");

  if (command !== null) {
    const detail = detailOf(command);
    return longer.length === 0 ? detail : `${detail}\n\nRelated commands:\n${list}`;
  }
  if (longer.length === 0) return null;
  return `${list}\n\nSend \`help ${prefix.join(" ")} <command>\` for details.`;
}

/** The command with the most leading `words` (already lower case) as its name, if any. */
export function longestMatch(
  commands: readonly AnyCommand[],
  words: readonly string[],
): AnyCommand | null {
  let best: AnyCommand | null = null;
  for (const command of commands) {
    const n = command.words.length;
    if (n === 0 || n > words.length || (best !== null && n <= best.words.length)) continue;
    if (command.words.every((w, i) => w.toLowerCase() === words[i])) best = command;
  }
  return best;
}

function detailOf(command: AnyCommand): string {
  const args = argumentsOf(command);
  const sections = [
    `**${command.words.join(" ")}**: ${command.summary}`,
    `Usage: \`${usageOf(command)}\``,
  ];
  if (command.description !== undefined) sections.push(command.description);
  if (args.length > 0) sections.push(["Arguments:", ...args.map(argumentLine)].join("\n"));
  if (command.examples.length > 0) {
    sections.push(["Examples:", ...command.examples.map((e) => `- \`${e}\``)].join("\n"));
  }
  const notes: string[] = [];
  if (command.permission === "admin") notes.push("Only tenant admins can run this command.");
  if (command.secret === true) {
    notes.push("The message carries a secret, so the bot removes it from the room once read.");
  }
  if (notes.length > 0) sections.push(notes.join(" "));
  return sections.join("\n\n");
}

function argumentLine(arg: ArgumentInfo): string {
  const traits = [arg.optional ? "optional" : "required"];
  if (arg.rest) traits.push("the rest of the line, as typed");
  if (arg.defaultText !== null) traits.push(`default ${arg.defaultText}`);
  let line = `- \`${arg.flag}\` (${traits.join(", ")})`;
  if (arg.description !== null) line += `: ${arg.description}`;
  if (arg.values !== null) {
    line += `${arg.description === null ? ":" : "."} One of ${arg.values.map((v) => `\`${v}\``).join(", ")}.`;
  }
  return line;
}

function formatArgument(arg: ArgumentInfo): string {
  const text = arg.positional
    ? `<${arg.flag}${arg.rest ? "…" : ""}>`
    : `${arg.flag}=${arg.values === null ? "…" : arg.values.join("|")}`;
  if (!arg.optional) return text;
  return arg.positional ? `[${text.slice(1, -1)}]` : `[${text}]`;
}

/** Words and positionals only, for one-line listings. */
function shortUsageOf(command: AnyCommand): string {
  const positionals = argumentsOf(command).filter((a) => a.positional);
  return [...command.words, ...positionals.map(formatArgument)].join(" ");
}

function describeField(
  field: string,
  schema: z.ZodType | undefined,
  positional: boolean,
  rest: boolean,
): ArgumentInfo {
  const layers = schema === undefined ? [] : unwrap(schema);
  const core = layers.at(-1);
  const defaulted = layers.find((s): s is z.ZodDefault => s instanceof z.ZodDefault);
  return {
    field,
    flag: kebabCase(field),
    positional,
    rest,
    // A positional missing from the schema is unknown to validation; call it optional.
    optional: schema === undefined || schema.safeParse(undefined).success,
    description: layers.find((s) => s.description !== undefined)?.description ?? null,
    values: core === undefined ? null : allowedValues(core),
    defaultText: defaulted === undefined ? null : defaultText(defaulted.def.defaultValue),
  };
}

/** The schema and every wrapper inside it, outermost first. */
function unwrap(schema: z.ZodType): z.ZodType[] {
  const layers: z.ZodType[] = [schema];
  for (let current: z.ZodType | null = schema; current !== null;) {
    current = innerOf(current);
    if (current !== null) layers.push(current);
  }
  return layers;
}

function innerOf(schema: z.ZodType): z.ZodType | null {
  if (
    schema instanceof z.ZodOptional ||
    schema instanceof z.ZodNullable ||
    schema instanceof z.ZodDefault ||
    schema instanceof z.ZodPrefault ||
    schema instanceof z.ZodReadonly ||
    schema instanceof z.ZodCatch ||
    schema instanceof z.ZodNonOptional
  ) {
    return schema.unwrap() as z.ZodType;
  }
  // For coercions and transforms the input side is what the user types.
  if (schema instanceof z.ZodPipe) return schema.in as z.ZodType;
  return null;
}

function objectShape(schema: z.ZodType): Readonly<Record<string, z.ZodType>> | null {
  for (const layer of unwrap(schema)) {
    if (layer instanceof z.ZodObject) return layer.shape as Record<string, z.ZodType>;
  }
  return null;
}

function allowedValues(schema: z.ZodType): readonly string[] | null {
  if (schema instanceof z.ZodEnum) return schema.options.map(String);
  if (schema instanceof z.ZodLiteral) return [...schema.values].map(String);
  return null;
}

function defaultText(value: unknown): string | null {
  if (typeof value === "string") return value === "" ? '""' : value;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  return null;
}
