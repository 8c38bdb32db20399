/**
 * Recognises explicit memory requests in a chat message ("remember that …",
 * "forget that …", "forget everything about me"). Pure: no I/O. The agent's
 * mention must already be stripped from the text.
 */

export type MemoryIntent =
  | {
      readonly kind: "remember";
      /** What to remember, in the speaker's words, trimmed of the request phrasing. */
      readonly content: string;
      /** Attribute the fact sets ("favourite colour"), so a later value supersedes it; null when none. */
      readonly key: string | null;
    }
  | { readonly kind: "forget"; readonly matching: string }
  | { readonly kind: "forget_all" };

/** Longer requests are not chat-sized "remember" requests; leave them to the model. */
const MAX_INTENT_MESSAGE_CHARS = 2_000;
/** Keys longer than this are sentences, not attributes. */
const MAX_KEY_WORDS = 6;
const MAX_KEY_CHARS = 60;

// Greetings and politeness that may precede the request: "hey, could you please remember …".
// A request phrased as a question ("could you remember …?") is still a request.
const PREAMBLE =
  String.raw`^(?:(?:hey|hi|hello|ok|okay|so|also|and|oh)\b[\s,!.]*)*` +
  String.raw`(?:(?:please|pls|plz|kindly)\b[\s,]*)?` +
  String.raw`(?<polite>(?:can|could|would|will)\s+you\s+(?:please\s+)?)?`;

const REMEMBER = new RegExp(
  PREAMBLE +
    String.raw`(?:remember|don'?t\s+forget|do\s+not\s+forget|keep\s+in\s+mind|make\s+a\s+note)` +
    String.raw`(?:\s+(?:that|this))?\b\s*[:,\-–—]?\s*(?<rest>.*)$`,
  "isu",
);

const FORGET = new RegExp(
  PREAMBLE +
    String.raw`forget(?:\s+(?:about|that|the\s+fact\s+that))*\b\s*[:,\-–—]?\s*(?<rest>.*)$`,
  "isu",
);

const FORGET_ALL =
  /^(?:(?:all|everything)(?:\s+(?:you\s+know|you\s+remember|you've\s+learned|you\s+have\s+learned))?\s+(?:about|of)\s+me|me|all\s+of\s+my\s+data|my\s+data|all\s+my\s+data)$/iu;

const TRAILING_POLITENESS = /[\s,]+(?:please|pls|plz|thanks|thank\s+you|thx)$/iu;

/** Colloquial "forget it" is not a memory request. */
const FORGET_NOTHING = /^(?:it|this|that|what\s+i\s+(?:said|just\s+said)|i\s+asked)?$/iu;

// "my favourite colour is green", "our office is in Berlin", "the wifi password is hunter2".
const KEYED_SHAPE =
  /^(?:my|our|his|her|their|the)\s+(?<key>[^,;:.!?]+?)\s+(?:is|are|was|were|=)\s+(?<value>\S.*)$/isu;

/** Parses an explicit memory request; null when the message is anything else. */
export function parseMemoryIntent(message: string): MemoryIntent | null {
  if (message.length > MAX_INTENT_MESSAGE_CHARS) return null;
  const text = cleanEdges(message);
  if (text === "") return null;

  const remember = REMEMBER.exec(text);
  if (remember !== null) {
    const rest = requestBody(remember);
    // "remember when we …" and "remember me?" reminisce; they ask nothing to be stored.
    if (rest === null || /^(?:when\b.*|me|it|this|that)$/isu.test(rest)) return null;
    return { kind: "remember", content: rest, key: deriveKey(rest) };
  }

  const forget = FORGET.exec(text);
  if (forget !== null) {
    const rest = requestBody(forget) ?? "";
    if (FORGET_ALL.test(rest)) return { kind: "forget_all" };
    if (FORGET_NOTHING.test(rest)) return null;
    return { kind: "forget", matching: rest };
  }
  return null;
}

/**
 * The text after the request verb, edges cleaned; null for a bare question
 * ("remember when we met?"), which is not a request unless asked politely.
 */
function requestBody(match: RegExpExecArray): string | null {
  const rest = match.groups?.rest ?? "";
  const isQuestion = rest.trimEnd().endsWith("?");
  if (isQuestion && match.groups?.polite === undefined) return null;
  const body = cleanEdges(
    cleanEdges(rest.trimEnd().replace(/\?+$/u, "")).replace(TRAILING_POLITENESS, ""),
  );
  return body === "" ? null : body;
}

/**
 * The attribute a fact of the shape "my X is Y" sets, normalised (lower
 * case, single spaces): "my Favourite  colour is blue" → "favourite colour".
 * Only possessive or definite subjects count: "she is nice" must not
 * supersede "she is tall".
 */
export function deriveKey(content: string): string | null {
  const match = KEYED_SHAPE.exec(content);
  const raw = match?.groups?.key;
  if (raw === undefined) return null;
  const key = normaliseKey(raw);
  if (key === "" || key.length > MAX_KEY_CHARS || key.split(" ").length > MAX_KEY_WORDS) {
    return null;
  }
  return key;
}

/** Lower case, single spaces, no quotes, typographic apostrophes made plain. */
export function normaliseKey(key: string): string {
  return key
    .toLowerCase()
    .replace(/[’‘]/gu, "'")
    .replace(/["`“”]/gu, "")
    .replace(/\s+/gu, " ")
    .trim();
}

/** Trims whitespace, quotes and surrounding sentence punctuation. */
function cleanEdges(text: string): string {
  return text
    .trim()
    .replace(/^[\s,:;.!\-–—"“”]+/u, "")
    .replace(/[\s,;.!"“”]+$/u, "")
    .trim();
}
