/**
 * Splits a markdown answer into messages that each fit a network's limit,
 * without cutting anything: at paragraphs, then lines, then sentences, then
 * words, and only when a "word" is longer than a whole message, inside it
 * (never inside a surrogate pair). A fenced code block split across
 * messages is closed at the end of one and reopened, with its language, at
 * the start of the next, so every part is markdown that renders on its own.
 */

/** A fenced code block open at some point of the text. */
interface OpenFence {
  /** ``` or ~~~ (3 or more). */
  readonly marker: string;
  /** The info string (language), reopened with the block. */
  readonly info: string;
}

/** Shortest limit the splitter accepts: room for a reopened fence and some text. */
export const MIN_PART_CHARS = 32;

/** A boundary found before a part's limit: the part ends at `end`, the rest starts at `next`. */
interface Cut {
  readonly end: number;
  readonly next: number;
  /** Cut between words of one paragraph: the next part starts at the margin. */
  readonly joinsWords: boolean;
}

const FENCE_LINE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const SENTENCE_END = /[.!?…。][)"'’”\]]*$/u;
/** A cut before one of these would split a grapheme: a combining mark or a zero-width joiner follows. */
const JOINS_PREVIOUS = /^[\p{M}\u200D\uFE0F]/u;

/** The fence open at the end of `text`, given the one open at its start. */
function fenceAfter(text: string, open: OpenFence | null): OpenFence | null {
  let current = open;
  for (const line of text.split("\n")) {
    const match = FENCE_LINE.exec(line);
    if (match === null) continue;
    const marker = match[1] as string;
    const rest = match[2] as string;
    if (current === null) {
      // A backtick fence's info string cannot hold backticks (CommonMark): that is inline code.
      if (!(marker.startsWith("`") && rest.includes("`"))) current = { marker, info: rest.trim() };
    } else if (
      marker[0] === current.marker[0] &&
      marker.length >= current.marker.length &&
      rest.trim() === ""
    ) {
      current = null;
    }
  }
  return current;
}

/**
 * The last boundary at or before `limit` (the part's length) that leaves a
 * part of at least `min` characters: a paragraph, else a line, else (outside
 * code) a sentence end, else a space. Spaces inside inline code do not count.
 */
function findCut(text: string, limit: number, min: number, inFence: boolean): Cut | undefined {
  const paragraph = text.lastIndexOf("\n\n", limit);
  if (paragraph >= min) return { end: paragraph, next: paragraph + 2, joinsWords: false };
  const line = text.lastIndexOf("\n", limit);
  if (line >= min) return { end: line, next: line + 1, joinsWords: false };
  // Inside code, prose boundaries mean nothing: only lines (or a hard cut) will do.
  if (inFence) return undefined;
  let sentence: number | undefined;
  let word: number | undefined;
  let inCode = false;
  for (let at = 0; at <= Math.min(limit, text.length - 1); at++) {
    const char = text[at];
    if (char === "`") inCode = !inCode;
    else if (char === "\n") inCode = false;
    else if ((char === " " || char === "\t") && !inCode && at >= min) {
      word = at;
      if (SENTENCE_END.test(text.slice(Math.max(0, at - 4), at))) sentence = at;
    }
  }
  const at = sentence ?? word;
  return at === undefined ? undefined : { end: at, next: at + 1, joinsWords: true };
}

/** A cut at `limit` that splits neither a surrogate pair nor a grapheme's joined marks. */
function hardCut(text: string, limit: number): Cut {
  let end = limit;
  while (
    end > 1 &&
    (JOINS_PREVIOUS.test(text.slice(end, end + 2)) || isHighSurrogate(text, end - 1))
  )
    end--;
  // A single grapheme longer than the limit (absurd, but possible): cut before its last pair.
  if (end <= 1) end = isHighSurrogate(text, limit - 1) ? limit - 1 : limit;
  return { end, next: end, joinsWords: false };
}

function isHighSurrogate(text: string, index: number): boolean {
  const code = text.charCodeAt(index);
  return code >= 0xd800 && code <= 0xdbff;
}

/** The part boundary for `text` within `limit` characters: a natural boundary in the second half if any, else any natural one, else a hard cut. */
function chooseCut(text: string, limit: number, inFence: boolean): Cut {
  return (
    findCut(text, limit, Math.floor(limit / 2), inFence) ??
    findCut(text, limit, 1, inFence) ??
    hardCut(text, limit)
  );
}

/**
 * Splits `text` into parts of at most `maxChars` UTF-16 code units each
 * (networks count at least as generously). Returns one part when it fits,
 * none for blank text.
 */
export function splitMessage(text: string, maxChars: number): string[] {
  if (maxChars < MIN_PART_CHARS)
    throw new RangeError(`maxChars must be at least ${MIN_PART_CHARS}`);
  const parts: string[] = [];
  let rest = text
    .toWellFormed()
    .replace(/^\s*\n/, "")
    .trimEnd();
  let open: OpenFence | null = null;
  while (rest !== "") {
    const reopen = open === null ? "" : reopenLine(open, maxChars);
    if (reopen.length + rest.length <= maxChars) {
      parts.push(reopen + rest);
      break;
    }
    const budget = maxChars - reopen.length;
    let cut = chooseCut(rest, budget, open !== null);
    let fence = carried(fenceAfter(rest.slice(0, cut.end), open), maxChars);
    // A part ending inside a code block closes it: make room for the closing
    // fence. The room only grows, so this ends (at worst in a hard cut).
    let reserve = 0;
    while (fence !== null && cut.end + fence.marker.length + 1 > budget && reserve < budget - 1) {
      reserve = Math.min(budget - 1, Math.max(reserve + 1, fence.marker.length + 1));
      cut = chooseCut(rest, budget - reserve, true);
      fence = carried(fenceAfter(rest.slice(0, cut.end), open), maxChars);
    }
    const body = rest.slice(0, cut.end).trimEnd();
    const closing = fence === null ? "" : `\n${fence.marker}`;
    if (body.trim() !== "") parts.push(reopen + body + closing);
    rest = rest.slice(cut.next).replace(/^[ \t]*\n+/, "");
    if (cut.joinsWords) rest = rest.replace(/^[ \t]+/, "");
    open = fence;
  }
  return parts;
}

/**
 * The fence if parts can close and reopen it and still hold text; a fence
 * marker too long for that (an absurd one, of dozens of backticks) is cut like
 * prose: no cut could then both fit the limit and make progress.
 */
function carried(fence: OpenFence | null, maxChars: number): OpenFence | null {
  return fence !== null && (fence.marker.length + 1) * 4 <= maxChars ? fence : null;
}

/** The fence line reopening a block; a language name too long to repeat is dropped. */
function reopenLine(fence: OpenFence, maxChars: number): string {
  const line = `${fence.marker}${fence.info}\n`;
  return line.length * 4 <= maxChars ? line : `${fence.marker}\n`;
}
