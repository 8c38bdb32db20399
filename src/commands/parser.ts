import type { z } from "zod";
import { argumentsOf, kebabCase, longestMatch, usageOf, type ArgumentInfo } from "./help.ts";
import { graphemes, lineProblem, nextToken, remainderFrom, type Token } from "./tokenize.ts";
import type { AnyCommand, ParseResult } from "./types.ts";

/**
 * Turns a chat message into a command and validated arguments.
 *
 * - The command is the longest run of leading words that names one (case
 *   insensitive), so `agent create ada` is `agent create` with `ada`.
 * - Plain tokens fill the positionals in order. A `rest` positional takes the
 *   remainder of the line verbatim, except that `key=value` tokens naming one
 *   of the command's options are still read as options where the rest would
 *   begin; after that, everything belongs to the rest.
 * - `key=value` fills the field `key` names: `display-name`, `displayName`
 *   and `display_name` are the same key. Values are strings; schemas coerce.
 * - Everything is then validated by the command's schema at once, so the user
 *   sees every problem in one reply.
 *
 * Never throws, whatever the text.
 */
export function parseCommand(text: string, commands: readonly AnyCommand[]): ParseResult {
  if (text.trim() === "") return { kind: "empty" };

  const maxWords = commands.reduce((max, c) => Math.max(max, c.words.length), 0);
  const leading = leadingWords(text, maxWords);
  const command = longestMatch(
    commands,
    leading.map((t) => t.value.toLowerCase()),
  );
  if (command === null) return unknownCommand(text, leading, commands);

  const lastWord = leading[command.words.length - 1];
  return parseArguments(text, lastWord?.end ?? 0, command);
}

/** Closest when at most about one edit in four characters away; beyond that a guess misleads. */
const SUGGESTION_EDITS_PER_CHAR = 1 / 4;
/** How much of an unknown command is echoed back. */
const MAX_ECHO_CHARS = 80;

/** Plain word tokens at the start of the line, at most `limit` of them. */
function leadingWords(text: string, limit: number): Token[] {
  const words: Token[] = [];
  let position = 0;
  while (words.length < limit) {
    const scanned = nextToken(text, position);
    if (scanned.kind !== "token" || scanned.token.key !== null) break;
    words.push(scanned.token);
    position = scanned.token.end;
  }
  return words;
}

function parseArguments(text: string, from: number, command: AnyCommand): ParseResult {
  const lineIssue = lineProblem(text);
  if (lineIssue !== null) return invalid(command, [lineIssue]);

  const args = argumentsOf(command);
  const options = new Map(args.filter((a) => !a.positional).map((a) => [keyOf(a.field), a]));
  const positionals = new Map(args.filter((a) => a.positional).map((a) => [keyOf(a.field), a]));
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  const extras: string[] = [];

  let index = 0;
  let position = from;
  for (;;) {
    const slot = command.positional[index];
    const scanned = nextToken(text, position);
    if (slot?.rest === true) {
      const key = scanned.kind === "token" ? scanned.token.key : null;
      if (key === null || !options.has(keyOf(key))) {
        const rest = remainderFrom(text, position);
        if (rest !== "") values[slot.name] = rest;
        break;
      }
    }
    if (scanned.kind === "end") break;
    if (scanned.kind === "error") return invalid(command, [scanned.message]);

    const token = scanned.token;
    position = token.end;
    if (token.key !== null) {
      const problem = setOption(values, token.key, token.value, options, positionals);
      if (problem !== null) problems.push(problem);
    } else if (slot === undefined) {
      extras.push(token.value);
    } else {
      values[slot.name] = token.value;
      index++;
    }
  }

  if (extras.length > 0) {
    const names = [...positionals.values()].map((p) => p.flag).join(", ");
    const expected = names === "" ? "it takes none" : `it takes: ${names}`;
    problems.push(
      `too many arguments: did not expect ${extras.map(echo).join(", ")} (${expected})`,
    );
  }

  const parsed = command.schema.safeParse(values);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const problem = describeIssue(issue, values);
      if (!problems.includes(problem)) problems.push(problem);
    }
  }
  if (problems.length > 0 || !parsed.success) return invalid(command, problems);
  return { kind: "command", command, args: parsed.data };
}

/** Records an option's value; returns a problem for the user, or null. */
function setOption(
  values: Record<string, unknown>,
  key: string,
  value: string,
  options: ReadonlyMap<string, ArgumentInfo>,
  positionals: ReadonlyMap<string, ArgumentInfo>,
): string | null {
  const option = options.get(keyOf(key));
  if (option === undefined) {
    const positional = positionals.get(keyOf(key));
    if (positional !== undefined) {
      return `${positional.flag}: write it without ${echo(`${key}=`)}, in its place in the usage`;
    }
    const known = [...options.values()].map((o) => o.flag).join(", ");
    const offer = known === "" ? "this command takes no options" : `options: ${known}`;
    return `unknown option ${echo(key)} (${offer}); to pass text containing "=", put it in quotes`;
  }
  if (option.field in values) return `${option.flag}: given more than once`;
  values[option.field] = value;
  return null;
}

function describeIssue(issue: z.core.$ZodIssue, values: Record<string, unknown>): string {
  const name = issue.path.map((p) => (typeof p === "string" ? kebabCase(p) : String(p))).join(".");
  const field = issue.path[0];
  const given = typeof field === "string" ? values[field] : undefined;
  let message = issue.message;
  if (
    issue.path.length === 1 &&
    given === undefined &&
    (issue.code === "invalid_type" || issue.code === "invalid_value")
  ) {
    message = "required";
  } else if (issue.code === "invalid_type" && typeof given === "string") {
    message = `must be ${EXPECTED_TEXT[issue.expected] ?? issue.expected} (got ${echo(given)})`;
  } else if (issue.code === "invalid_value") {
    const allowed = issue.values.map((v) => String(v)).join(", ");
    message = `must be one of ${allowed}`;
    if (typeof given === "string") message += ` (got ${echo(given)})`;
  }
  return name === "" ? message : `${name}: ${message}`;
}

/** Zod's type names, as a person would say them. */
const EXPECTED_TEXT: Readonly<Record<string, string>> = {
  number: "a number",
  int: "a whole number",
  bigint: "a whole number",
  boolean: "yes or no",
  date: "a date",
};

function invalid(command: AnyCommand, problems: readonly string[]): ParseResult {
  const listed = problems.length > 0 ? problems : ["invalid arguments"];
  return { kind: "invalid", command, problems: listed, usage: usageOf(command) };
}

function unknownCommand(
  text: string,
  leading: readonly Token[],
  commands: readonly AnyCommand[],
): ParseResult {
  const words = leading.map((t) => t.value);
  const typed = words.length > 0 ? words.join(" ") : (text.trim().split(/\s+/u)[0] ?? "");
  return {
    kind: "unknown",
    input: truncate(typed, MAX_ECHO_CHARS),
    suggestion: closestCommand(
      commands,
      words.map((w) => w.toLowerCase()),
    ),
  };
}

/**
 * The command whose words are nearest (edit distance with transpositions)
 * to as many leading words typed, so `agent creat ada` and `agnet create`
 * both find `agent create`. On a tie the command with more words wins (more
 * of what was typed agrees with it), then the one listed first.
 */
function closestCommand(commands: readonly AnyCommand[], words: readonly string[]): string | null {
  let best: { command: AnyCommand; distance: number } | null = null;
  for (const command of commands) {
    const target = command.words.join(" ").toLowerCase();
    const typed = words.slice(0, command.words.length).join(" ");
    if (target === "" || typed === "") continue;
    const limit = Math.max(1, Math.floor(target.length * SUGGESTION_EDITS_PER_CHAR));
    const distance = editDistance(typed, target, limit);
    if (distance > limit) continue;
    const better =
      best === null ||
      distance < best.distance ||
      (distance === best.distance && command.words.length > best.command.words.length);
    if (better) best = { command, distance };
  }
  return best === null ? null : best.command.words.join(" ");
}

/**
 * Optimal string alignment distance over graphemes; returns `limit + 1`
 * early when it must exceed `limit`, which keeps long junk input cheap.
 */
export function editDistance(a: string, b: string, limit = Number.POSITIVE_INFINITY): number {
  const x = graphemes(a);
  const y = graphemes(b);
  if (Math.abs(x.length - y.length) > limit) return limit + 1;
  let previous2: number[] = [];
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let value = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) {
        value = Math.min(value, (previous2[j - 2] ?? 0) + 1);
      }
      current.push(value);
      rowMin = Math.min(rowMin, value);
    }
    if (rowMin > limit) return limit + 1;
    previous2 = previous;
    previous = current;
  }
  return previous[y.length] ?? 0;
}

/** `display-name`, `displayName` and `display_name` all become `displayname`. */
function keyOf(name: string): string {
  return name.replace(/[-_]/g, "").toLowerCase();
}

function echo(value: string): string {
  return `"${truncate(value, 40)}"`;
}

function truncate(value: string, maxChars: number): string {
  const chars = graphemes(value);
  return chars.length <= maxChars ? value : `${chars.slice(0, maxChars).join("")}…`;
}
