import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MIN_PART_CHARS, splitMessage } from "../../src/agents/message-parts.ts";
import { parseEvent, type ParsedEvent } from "../../src/matrix/events.ts";
import { markdownToHtml } from "../../src/matrix/formatting.ts";
import type { RawEvent } from "../../src/matrix/inbox.ts";
import { isMatrixUserId } from "../../src/shared/ids.ts";

const MAX_BODY_CHARS = 1000;
const KINDS = ["message", "invite", "membership", "ignored"];

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
/** Text with lone surrogates, pairs, combining marks, HTML and markdown punctuation mixed in. */
const hostileChar = fc.oneof(
  fc.string({ unit: "binary", maxLength: 1 }),
  loneSurrogate,
  fc.constantFrom("<", ">", "&", "\n", " ", "`", "~", "*", "_", "#", "\u0301", "\u200d", "👩‍👧"),
);
const hostileText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.string({ unit: hostileChar, maxLength: 400 }),
);
/** Nested HTML as clients put in formatted_body, including a reply fallback. */
const html: fc.Arbitrary<string> = fc.letrec<{ node: string }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    hostileText,
    fc
      .tuple(
        fc.constantFrom("b", "i", "a", "mx-reply", "blockquote", "ol", "li", "code", "pre", "p"),
        fc.array(tie("node"), { maxLength: 4 }),
        fc.boolean(),
      )
      .map(([tag, children, closed]) => `<${tag}>${children.join("")}${closed ? `</${tag}>` : ""}`),
  ),
})).node;
const userId = fc.oneof(
  fc.constantFrom("@alice:acme.test", "@ai_ada:acme.test", "@bad", "@:x", "@a:b:c"),
  hostileText,
);
const junk = fc.oneof(fc.anything(), fc.jsonValue());
const relation = fc.oneof(
  fc.record(
    {
      rel_type: fc.oneof(fc.constantFrom("m.replace", "m.thread", "m.annotation"), junk),
      event_id: fc.oneof(fc.constant("$original"), hostileText, junk),
      "m.in_reply_to": fc.oneof(fc.record({ event_id: fc.oneof(fc.constant("$q"), junk) }), junk),
      is_falling_back: junk,
    },
    { requiredKeys: [] },
  ),
  junk,
);
const content = fc.oneof(
  fc.record(
    {
      msgtype: fc.oneof(fc.constantFrom("m.text", "m.notice", "m.emote", "m.image"), hostileText),
      body: fc.oneof(hostileText, junk),
      format: fc.oneof(fc.constant("org.matrix.custom.html"), junk),
      formatted_body: fc.oneof(html, junk),
      "m.relates_to": relation,
      "m.mentions": fc.oneof(
        fc.record(
          {
            user_ids: fc.oneof(fc.array(userId, { maxLength: 20 }), fc.array(junk), junk),
            room: junk,
          },
          { requiredKeys: [] },
        ),
        junk,
      ),
      "m.new_content": junk,
      __proto__: junk,
      constructor: junk,
    },
    { requiredKeys: [] },
  ),
  fc.record({ membership: fc.oneof(fc.constantFrom("invite", "join", "leave"), junk) }),
  junk,
);
const rawEvent: fc.Arbitrary<RawEvent> = fc.record({
  event_id: fc.oneof(
    fc.constant("$event"),
    hostileText.filter((s) => s !== ""),
  ),
  room_id: fc.constant("!room:acme.test"),
  type: fc.oneof(fc.constantFrom("m.room.message", "m.room.member"), hostileText),
  sender: userId,
  state_key: fc.oneof(userId, junk),
  origin_server_ts: fc.oneof(
    fc.integer(),
    fc.double(),
    fc.constantFrom(8.64e15 + 1, -8.64e15 - 1, 1e300, Number.MAX_SAFE_INTEGER),
    junk,
  ),
  content,
});

/** The contract every result keeps: one of four kinds, bounded well-formed text, valid ids and dates. */
function checkParsed(parsed: ParsedEvent): void {
  expect(KINDS).toContain(parsed.kind);
  if (parsed.kind === "ignored") {
    expect(parsed.reason.length).toBeLessThanOrEqual(400);
    return;
  }
  if (parsed.kind !== "message") return;
  const { message } = parsed;
  expect(message.body.length).toBeLessThanOrEqual(MAX_BODY_CHARS);
  expect(message.body.isWellFormed()).toBe(true);
  if (message.formattedBody !== null) {
    expect(message.formattedBody.length).toBeLessThanOrEqual(MAX_BODY_CHARS * 2);
    expect(message.formattedBody.isWellFormed()).toBe(true);
  }
  for (const id of message.mentionedUserIds ?? []) expect(isMatrixUserId(id)).toBe(true);
  // A date the database and toISOString accept.
  expect(Number.isNaN(message.sentAt.getTime())).toBe(false);
  expect(() => message.sentAt.toISOString()).not.toThrow();
}

function deepJson(depth: number): unknown {
  let value: unknown = "bottom";
  for (let level = 0; level < depth; level++) value = level % 2 === 0 ? { a: value } : [value];
  return value;
}

describe("parseEvent on hostile events", () => {
  it("returns a message or a reason, never throws, and keeps bodies bounded and well-formed", () => {
    fc.assert(
      fc.property(rawEvent, (event) => {
        checkParsed(parseEvent(event, MAX_BODY_CHARS));
      }),
      { numRuns: 3000 },
    );
  });

  it("copes with bodies of several megabytes and JSON 10,000 levels deep", () => {
    const megabytes = (unit: string) => unit.repeat(Math.ceil(3_000_000 / unit.length));
    const huge = [
      megabytes("a"),
      megabytes("\ud83d"),
      megabytes("\ud83d\ude00"),
      `> <@x:y> ${megabytes("quoted\n> ")}`,
      ` ${megabytes(" ")}<mx-reply>`,
      `<mx-reply>${megabytes("<b>")}`,
    ];
    for (const text of huge) {
      const parsed = parseEvent(
        {
          event_id: "$huge",
          room_id: "!room:acme.test",
          type: "m.room.message",
          sender: "@alice:acme.test",
          content: {
            msgtype: "m.text",
            body: text,
            format: "org.matrix.custom.html",
            formatted_body: text,
            "m.relates_to": { "m.in_reply_to": { event_id: "$q" } },
            "m.new_content": deepJson(10_000),
          },
        },
        MAX_BODY_CHARS,
      );
      expect(parsed.kind).toBe("message");
      checkParsed(parsed);
    }
    const deep = parseEvent(
      {
        event_id: "$deep",
        room_id: "!room:acme.test",
        type: "m.room.message",
        sender: "@alice:acme.test",
        content: deepJson(10_000),
      },
      MAX_BODY_CHARS,
    );
    expect(deep.kind).toBe("ignored");
    const longType = parseEvent(
      {
        event_id: "$long",
        room_id: "!room:acme.test",
        type: "m.room.message",
        sender: "@alice:acme.test",
        content: { msgtype: megabytes("m.x"), body: "hi" },
      },
      MAX_BODY_CHARS,
    );
    checkParsed(longType);
  });

  // Regression: a finite origin_server_ts beyond the Date range gave an
  // Invalid Date, which threw later when the message was stored.
  it("falls back to now for a timestamp outside the Date range", () => {
    const parsed = parseEvent(
      {
        event_id: "$far",
        room_id: "!room:acme.test",
        type: "m.room.message",
        sender: "@alice:acme.test",
        origin_server_ts: 1e300,
        content: { msgtype: "m.text", body: "hi" },
      },
      MAX_BODY_CHARS,
    );
    checkParsed(parsed);
  });
});

/** The text's non-blank characters, in order. */
const ink = (text: string): string => text.replace(/\s+/g, "");

/** Whether `small` is a subsequence of `big`. */
function isSubsequence(small: string, big: string): boolean {
  let at = 0;
  for (const char of big) if (at < small.length && small.startsWith(char, at)) at += char.length;
  return at >= small.length;
}

const markdownUnit = fc.oneof(
  hostileChar,
  fc.constantFrom("```", "~~~", "````", "```ts\n", "\n```\n", "\n\n", ". ", "`code`", "> ", "- "),
  fc.string({ unit: "grapheme", maxLength: 20 }),
);
const markdownText = fc.oneof(
  fc.string({ unit: markdownUnit, maxLength: 300 }),
  fc.string({ unit: markdownUnit, minLength: 500, maxLength: 2000 }),
);

describe("splitMessage on hostile answers", () => {
  it("never exceeds the limit, never breaks UTF-16, and loses no text", () => {
    fc.assert(
      fc.property(markdownText, fc.integer({ min: MIN_PART_CHARS, max: 400 }), (text, max) => {
        const parts = splitMessage(text, max);
        for (const part of parts) {
          expect(part.length).toBeLessThanOrEqual(max);
          expect(part.isWellFormed()).toBe(true);
          expect(part.trim()).not.toBe("");
        }
        // Splitting only adds fences and drops blanks between parts.
        expect(isSubsequence(ink(text.toWellFormed()), ink(parts.join("")))).toBe(true);
        if (!/```|~~~/.test(text)) expect(ink(parts.join(""))).toBe(ink(text.toWellFormed()));
      }),
      { numRuns: 1500 },
    );
  });

  // Regression: a fence marker over a quarter of the limit left no room to
  // close and reopen it, and a part starting with a surrogate pair looped forever.
  it("ends on a 28-backtick fence around a surrogate pair, within 58 characters", () => {
    const fence = "`".repeat(28);
    const text = `${fence}lang\n😀 ${"code line ".repeat(30)}\n${fence}\nafter`;
    const parts = splitMessage(text, 58);
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(58);
    expect(ink(parts.join(""))).toBe(ink(text));
  });

  it("keeps to the limit when a fence is longer than a whole part", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MIN_PART_CHARS, max: 80 }),
        fc.integer({ min: 3, max: 200 }),
        fc.constantFrom("`", "~"),
        fc.string({ unit: markdownUnit, maxLength: 400 }),
        (max, fenceLength, fenceChar, body) => {
          const fence = fenceChar.repeat(fenceLength);
          const text = `${fence}lang\n${body}\n${"code line ".repeat(30)}\n${fence}\nafter`;
          const parts = splitMessage(text, max);
          for (const part of parts) expect(part.length).toBeLessThanOrEqual(max);
          expect(isSubsequence(ink(text.toWellFormed()), ink(parts.join("")))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("markdownToHtml on hostile answers", () => {
  it("renders anything without throwing, raw HTML escaped and no unsafe link", () => {
    fc.assert(
      fc.property(
        fc.oneof(markdownText, html, fc.constantFrom("[x](javascript:alert(1))", "<script>x")),
        (text) => {
          const rendered = markdownToHtml(text);
          expect(rendered).not.toMatch(/<script|href="javascript:/i);
        },
      ),
      { numRuns: 1000 },
    );
  });

  // Regression: 5,000 nested quotes overflowed marked's stack and failed the turn.
  // (marked's cost grows faster than linearly with list depth and runs of
  // emphasis marks: sizes here stay within what a model answer can be.)
  it("renders markdown nested thousands of levels deep", () => {
    for (const text of [
      "> ".repeat(5000) + "deep",
      Array.from({ length: 300 }, (_, i) => `${"  ".repeat(i)}- item`).join("\n"),
      "*".repeat(5000) + "x" + "*".repeat(5000),
      "[".repeat(20_000) + "x" + "](http://a)".repeat(1000),
    ]) {
      expect(typeof markdownToHtml(text)).toBe("string");
    }
  });
});
