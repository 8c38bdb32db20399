/**
 * Splitting a chat command line into tokens.
 *
 * The rules are chosen for people typing in a chat client, not a shell:
 * - Words are separated by any Unicode whitespace (clients insert no-break
 *   spaces and newlines).
 * - A quote opens a quoted value only at the start of a token or right after
 *   `key=`; elsewhere it is a literal character, so `O'Brien` and `don't`
 *   need no quoting. Text right after a closing quote joins the same token.
 * - Double quotes (`"…"`, and `“…”` as phones type them) honour `\"` and
 *   `\\`; any other backslash is literal so paths and patterns survive.
 *   Single quotes (`'…'`, `‘…’`) take everything literally.
 * - `key=value` (key unquoted, letters, digits, `-` and `_`) is an option;
 *   a quoted `"a=b"` is a plain word.
 *
 * Tokens are read one at a time (`nextToken`) so the parser can stop where a
 * `rest` argument begins and take the remainder verbatim (`remainderFrom`):
 * free text such as instructions is never re-tokenized, so an apostrophe at
 * its start or an odd quote inside it is kept as typed.
 */

export const MAX_COMMAND_LENGTH_CHARS = 4000;

export interface Token {
  /** The text after quotes and escapes are removed; for an option, its value. */
  readonly value: string;
  /** For `key=value`, the key as typed; null for a plain word. */
  readonly key: string | null;
  /** Offsets (UTF-16 code units) of the token in the line: start inclusive, end exclusive. */
  readonly start: number;
  readonly end: number;
}

export type ScanResult =
  | { readonly kind: "token"; readonly token: Token }
  | { readonly kind: "end" }
  /** `message` is for the user: what is wrong and where (1-based character position). */
  | { readonly kind: "error"; readonly message: string };

const WHITESPACE = /\s/u;
const OPTION_KEY = /[A-Za-z][A-Za-z0-9_-]*=/y;
// Tab, newline and carriage return are how people format multi-line text.
const FORBIDDEN_CONTROL = /[\p{Cc}--[\t\n\r]]/v;

/** Opening quote → its closing quote. */
const QUOTES: ReadonlyMap<string, string> = new Map([
  ['"', '"'],
  ["“", "”"],
  ["'", "'"],
  ["‘", "’"],
]);
const ESCAPING_QUOTES: ReadonlySet<string> = new Set(['"', "“"]);

/**
 * Whole-line checks that do not depend on the command: length and control
 * characters. Returns a message for the user, or null when the line is fine.
 */
export function lineProblem(line: string): string | null {
  if (line.length > MAX_COMMAND_LENGTH_CHARS) {
    return `the message is ${line.length} characters long; commands are limited to ${MAX_COMMAND_LENGTH_CHARS}`;
  }
  const match = FORBIDDEN_CONTROL.exec(line);
  if (match !== null) {
    const code = match[0].codePointAt(0) ?? 0;
    const hex = code.toString(16).toUpperCase().padStart(4, "0");
    return `control character U+${hex} at position ${positionOf(line, match.index)} is not allowed`;
  }
  return null;
}

/** The 1-based character position of a UTF-16 offset, counting as a person would (graphemes). */
export function positionOf(line: string, offset: number): number {
  return graphemes(line.slice(0, offset)).length + 1;
}

const SEGMENTER = new Intl.Segmenter(undefined, { granularity: "grapheme" });

/** User-perceived characters: an emoji with modifiers or a letter with combining marks is one. */
export function graphemes(text: string): string[] {
  return Array.from(SEGMENTER.segment(text), (s) => s.segment);
}

/** The offset of the first non-whitespace character at or after `from`. */
export function skipWhitespace(line: string, from: number): number {
  let i = from;
  while (i < line.length && WHITESPACE.test(charAt(line, i))) i += charAt(line, i).length;
  return i;
}

/** Reads the token that starts at or after `from`. Never throws. */
export function nextToken(line: string, from: number): ScanResult {
  const start = skipWhitespace(line, from);
  if (start >= line.length) return { kind: "end" };

  OPTION_KEY.lastIndex = start;
  const keyMatch = OPTION_KEY.exec(line);
  const key = keyMatch === null ? null : keyMatch[0].slice(0, -1);
  const valueStart = keyMatch === null ? start : start + keyMatch[0].length;

  const value = readValue(line, valueStart);
  if (value.kind === "error") return value;
  return { kind: "token", token: { value: value.text, key, start, end: value.end } };
}

/** Every token of the line; the first problem stops it. Never throws. */
export function tokenize(
  line: string,
):
  | { readonly ok: true; readonly tokens: readonly Token[] }
  | { readonly ok: false; readonly error: string } {
  const problem = lineProblem(line);
  if (problem !== null) return { ok: false, error: problem };
  const tokens: Token[] = [];
  let position = 0;
  for (;;) {
    const scanned = nextToken(line, position);
    if (scanned.kind === "end") return { ok: true, tokens };
    if (scanned.kind === "error") return { ok: false, error: scanned.message };
    tokens.push(scanned.token);
    position = scanned.token.end;
  }
}

/**
 * The rest of the line from `from`, exactly as typed except that whitespace
 * around it (the separator before it, a trailing newline) is dropped.
 */
export function remainderFrom(line: string, from: number): string {
  return line.slice(from).replace(/^\s+|\s+$/gu, "");
}

/**
 * Writes `value` so that `nextToken` reads it back as one plain word with
 * exactly that value: bare when that is unambiguous, else double-quoted.
 */
export function quoteArgument(value: string): string {
  OPTION_KEY.lastIndex = 0;
  const needsQuotes =
    value === "" ||
    QUOTES.has(charAt(value, 0)) ||
    /\s/u.test(value) ||
    // A bare `a=b` would be read as an option.
    OPTION_KEY.test(value);
  return needsQuotes ? `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"` : value;
}

function readValue(
  line: string,
  from: number,
):
  | { readonly kind: "value"; readonly text: string; readonly end: number }
  | {
      readonly kind: "error";
      readonly message: string;
    } {
  const opening = charAt(line, from);
  const closing = QUOTES.get(opening);
  if (closing === undefined) {
    const end = wordEnd(line, from);
    return { kind: "value", text: line.slice(from, end), end };
  }

  const escapes = ESCAPING_QUOTES.has(opening);
  let text = "";
  let i = from + opening.length;
  while (i < line.length) {
    const c = charAt(line, i);
    if (c === closing) {
      // Whatever follows the closing quote up to the next space is part of this token.
      const end = wordEnd(line, i + c.length);
      return { kind: "value", text: text + line.slice(i + c.length, end), end };
    }
    if (escapes && c === "\\" && i + 1 < line.length) {
      const next = charAt(line, i + 1);
      if (next === "\\" || next === closing || next === '"') {
        text += next;
        i += 1 + next.length;
        continue;
      }
    }
    text += c;
    i += c.length;
  }
  return {
    kind: "error",
    message: `the quote ${opening} at position ${positionOf(line, from)} is never closed (add ${closing} where the quoted text ends)`,
  };
}

function wordEnd(line: string, from: number): number {
  let i = from;
  while (i < line.length) {
    const c = charAt(line, i);
    if (WHITESPACE.test(c)) break;
    i += c.length;
  }
  return i;
}

/** The whole character (one or two UTF-16 units) at `offset`, or "" past the end. */
function charAt(line: string, offset: number): string {
  const code = line.codePointAt(offset);
  return code === undefined ? "" : String.fromCodePoint(code);
}
