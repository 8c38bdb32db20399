import { describe, expect, it } from "vitest";
import { BridgedAnswer, bridgedMessages } from "../../src/agents/bridged-delivery.ts";
import { splitMessage } from "../../src/agents/message-parts.ts";
import type { ChatGateway, OutgoingMessage } from "../../src/agents/ports.ts";
import { NETWORKS } from "../../src/bridges/networks.ts";
import { markdownToHtml } from "../../src/matrix/formatting.ts";
import type { EventId, MatrixUserId, RoomId } from "../../src/shared/ids.ts";

const AGENT = "@ai_ada:acme.test" as MatrixUserId;
const ROOM = "!room:acme.test" as RoomId;
const GHOST = "@slack_T1-U_1:acme.test" as MatrixUserId;
const QUESTION = "$question" as EventId;
const ROOT = "$root" as EventId;

/** The words of a text, for checking that splitting lost or invented nothing but fences. */
const words = (text: string): string[] =>
  text.split(/\s+/).filter((word) => word !== "" && !/^(```|~~~)/.test(word));

function expectWellFormedParts(parts: readonly string[], maxChars: number): void {
  for (const part of parts) {
    expect(part.length).toBeLessThanOrEqual(maxChars);
    expect(part.trim()).not.toBe("");
    expect(part.isWellFormed()).toBe(true);
    // Every part renders on its own: code blocks open and close within it.
    const html = markdownToHtml(part);
    expect(html.match(/<pre>/g)?.length ?? 0).toBe(html.match(/<\/pre>/g)?.length ?? 0);
  }
}

describe("splitMessage", () => {
  it("keeps a text that fits as one part, and blank text as none", () => {
    expect(splitMessage("hello there", 40)).toEqual(["hello there"]);
    expect(splitMessage(" \n\n ", 40)).toEqual([]);
  });

  it("splits at paragraphs first", () => {
    const text = "First paragraph, short.\n\nSecond paragraph, also short.\n\nThird one.";
    expect(splitMessage(text, 56)).toEqual([
      "First paragraph, short.\n\nSecond paragraph, also short.",
      "Third one.",
    ]);
  });

  it("then at lines, then at sentences, then at words, never inside one", () => {
    expect(splitMessage("- one item here\n- two item here\n- three item here", 36)).toEqual([
      "- one item here\n- two item here",
      "- three item here",
    ]);
    expect(splitMessage("It rains today. We stay in and read a book. Tomorrow sun.", 48)).toEqual([
      "It rains today. We stay in and read a book.",
      "Tomorrow sun.",
    ]);
    const long = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";
    const parts = splitMessage(long, 32);
    expectWellFormedParts(parts, 32);
    expect(parts.join(" ")).toBe(long);
  });

  it("does not cut inside inline code when a space outside it will do", () => {
    const text = "run the command `npm run check --workspace all` before you push";
    const parts = splitMessage(text, 40);
    expectWellFormedParts(parts, 40);
    for (const part of parts) expect((part.match(/`/g)?.length ?? 0) % 2).toBe(0);
  });

  it("cuts a word longer than a message without splitting a surrogate pair or a joined emoji", () => {
    const text = "😀".repeat(50);
    const parts = splitMessage(text, 33);
    expectWellFormedParts(parts, 33);
    expect(parts.join("")).toBe(text);
    const family = "👩‍👩‍👧".repeat(10);
    const familyParts = splitMessage(family, 32);
    expectWellFormedParts(familyParts, 32);
    expect(familyParts.join("")).toBe(family);
    for (const part of familyParts) expect(part.startsWith("\u200D")).toBe(false);
  });

  it("closes a code block at the end of a part and reopens it with its language", () => {
    const code = Array.from({ length: 12 }, (_, n) => `const value${n} = compute(${n});`);
    const text = `Here is the code:\n\n\`\`\`ts\n${code.join("\n")}\n\`\`\`\n\nThat is all.`;
    const parts = splitMessage(text, 120);
    expect(parts.length).toBeGreaterThan(2);
    expectWellFormedParts(parts, 120);
    const codeParts = parts.filter((part) => part.includes("const value"));
    for (const part of codeParts) {
      expect(part).toMatch(/```ts\n/);
      expect(part).toMatch(/\n```(\n|$)/);
      expect(markdownToHtml(part)).toContain('<code class="language-ts">');
    }
    // Every line of code is in exactly one part, whole.
    for (const line of code)
      expect(parts.filter((part) => part.split("\n").includes(line))).toHaveLength(1);
    expect(words(parts.join("\n"))).toEqual(words(text));
  });

  it("keeps ~~~ fences and longer backtick fences as they were opened", () => {
    const tilde = `~~~python\n${"print('x')\n".repeat(8)}~~~`;
    const parts = splitMessage(tilde, 48);
    expectWellFormedParts(parts, 48);
    for (const part of parts) {
      expect(part.startsWith("~~~python\n")).toBe(true);
      expect(part.endsWith("\n~~~")).toBe(true);
    }
  });

  it("holds its limit for any mix of prose, code, emoji and long words", () => {
    const pieces = [
      "Paragraph with some words in it.",
      "```js\nconsole.log('hello');\nlet x = 1;\n```",
      "😀😀😀 emoji 🎉 party",
      "x".repeat(90),
      "- list\n- items\n  - nested",
      "A sentence! Another? Yes.",
      "`inline code with spaces` and more",
      "```\nplain fence\n\n\nwith blanks\n```",
    ];
    let seed = 7;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    for (let round = 0; round < 200; round++) {
      const count = 1 + (next() % 8);
      const text = Array.from({ length: count }, () => pieces[next() % pieces.length]).join(
        next() % 2 === 0 ? "\n\n" : "\n",
      );
      const limit = 32 + (next() % 100);
      const parts = splitMessage(text, limit);
      expectWellFormedParts(parts, limit);
      expect(parts.join("").replace(/\s|`|~/g, "").length).toBeGreaterThanOrEqual(
        text.replace(/\s|`|~/g, "").length,
      );
    }
  });
});

const render = markdownToHtml;

describe("bridgedMessages", () => {
  const answering = { eventId: QUESTION, sender: GHOST, threadRootId: null };

  it("mentions the person in a group with a pill and m.mentions, and replies to their message", () => {
    const [first, ...rest] = bridgedMessages(
      "Sure, here it is.",
      "m.text",
      { network: "slack", answering, isDirect: false },
      render,
    );
    expect(rest).toEqual([]);
    expect(first?.mentions).toEqual([GHOST]);
    expect(first?.html).toContain(`<a href="https://matrix.to/#/${GHOST}">${GHOST}</a>: Sure`);
    expect(first?.body).toBe(`${GHOST}: Sure, here it is.`);
    expect(first?.replyTo).toBe(QUESTION);
    expect(first?.threadRootId).toBeNull();
  });

  it("puts the mention on its own line before a block, and none in a DM", () => {
    const [block] = bridgedMessages(
      "```sh\nls\n```",
      "m.text",
      { network: "discord", answering, isDirect: false },
      render,
    );
    expect(block?.html).toContain('<code class="language-sh">');
    const [direct] = bridgedMessages(
      "hi",
      "m.text",
      { network: "discord", answering, isDirect: true },
      render,
    );
    expect(direct).toMatchObject({ body: "hi", mentions: [], replyTo: null, threadRootId: null });
  });

  it("keeps threads where the network has them and makes them replies where it does not", () => {
    const inThread = { ...answering, threadRootId: ROOT };
    const slack = bridgedMessages(
      "x",
      "m.text",
      { network: "slack", answering: inThread, isDirect: false },
      render,
    );
    expect(slack[0]).toMatchObject({ threadRootId: ROOT, replyTo: QUESTION });
    const telegram = bridgedMessages(
      "x",
      "m.text",
      { network: "telegram", answering: inThread, isDirect: true },
      render,
    );
    expect(telegram[0]).toMatchObject({ threadRootId: null, replyTo: QUESTION });
  });

  it("splits within the network's limit, mention included; only the first part mentions and replies", () => {
    const paragraph = "word ".repeat(150).trim();
    const text = Array.from({ length: 6 }, () => paragraph).join("\n\n");
    const messages = bridgedMessages(
      text,
      "m.text",
      { network: "discord", answering: { ...answering, threadRootId: ROOT }, isDirect: false },
      render,
    );
    expect(messages.length).toBeGreaterThan(2);
    for (const [index, message] of messages.entries()) {
      expect(message.body.length).toBeLessThanOrEqual(NETWORKS.discord.maxMessageChars);
      expect(message.threadRootId).toBe(ROOT);
      expect(message.mentions).toEqual(index === 0 ? [GHOST] : []);
      expect(message.replyTo).toBe(index === 0 ? QUESTION : null);
      expect(message.html).toBe(index === 0 ? message.html : render(message.body));
    }
  });
});

interface Sent {
  readonly key: string;
  readonly message: OutgoingMessage;
  readonly eventId: EventId;
}

/** A ChatGateway that records sends; a delivery must never edit. */
function recordingChat(): { chat: ChatGateway; sent: Sent[] } {
  const sent: Sent[] = [];
  const refuse = (): Promise<never> => Promise.reject(new Error("not used by a bridged answer"));
  const chat: ChatGateway = {
    send(sender, roomId, message, key) {
      expect(sender).toBe(AGENT);
      expect(roomId).toBe(ROOM);
      const eventId = `$part-${sent.length}` as EventId;
      sent.push({ key, message, eventId });
      return Promise.resolve(eventId);
    },
    edit: refuse,
    setTyping: refuse,
    join: refuse,
    leave: refuse,
    ensureProfile: refuse,
    joinedMemberCount: refuse,
    invite: refuse,
    redact: refuse,
    sendFile: refuse,
  };
  return { chat, sent };
}

describe("BridgedAnswer", () => {
  const long = Array.from({ length: 5 }, (_, n) => `Paragraph ${n}. ${"text ".repeat(300)}`).join(
    "\n\n",
  );

  function answer(chat: ChatGateway, existingEventId: EventId | null, posted: unknown[][]) {
    return new BridgedAnswer({
      chat,
      sender: AGENT,
      roomId: ROOM,
      network: "discord",
      answering: { eventId: QUESTION, sender: GHOST, threadRootId: null },
      isDirect: false,
      render,
      idempotencyKey: "turn-key",
      existingEventId,
      onPosted: (eventId, text) => {
        posted.push([eventId, text]);
        return Promise.resolve();
      },
    });
  }

  it("sends nothing while the model streams, then every part once under per-part keys", async () => {
    const { chat, sent } = recordingChat();
    const posted: unknown[][] = [];
    const writer = answer(chat, null, posted);
    for (const word of long.split(/(?<= )/)) await writer.append(word);
    expect(sent).toEqual([]);
    const first = await writer.finish();
    expect(sent.length).toBeGreaterThan(2);
    expect(first).toBe(sent[0]?.eventId);
    expect(sent.map((entry) => entry.key)).toEqual(sent.map((_, n) => `turn-key/part/${n}`));
    // Recorded with the whole answer right after the first part, before any other.
    expect(posted).toEqual([[sent[0]?.eventId, long]]);
  });

  it("a resumed delivery of the recorded answer skips the posted first part and reuses the keys", async () => {
    const { chat: firstChat, sent: firstRun } = recordingChat();
    await answer(firstChat, null, []).append(long);
    const interrupted = answer(firstChat, null, []);
    await interrupted.append(long);
    await interrupted.finish();

    const { chat, sent } = recordingChat();
    const posted: unknown[][] = [];
    const resumed = answer(chat, "$posted-before" as EventId, posted);
    await resumed.append(long);
    expect(await resumed.finish()).toBe("$posted-before");
    expect(posted).toEqual([]);
    expect(sent.map((entry) => entry.key)).toEqual(firstRun.slice(1).map((entry) => entry.key));
    expect(sent.map((entry) => entry.message)).toEqual(
      firstRun.slice(1).map((entry) => entry.message),
    );
  });

  it("a failure without text is a notice, not recorded as an answer", async () => {
    const { chat, sent } = recordingChat();
    const posted: unknown[][] = [];
    await answer(chat, null, posted).fail("the model is unavailable");
    expect(sent).toHaveLength(1);
    expect(sent[0]?.message.msgtype).toBe("m.notice");
    expect(sent[0]?.message.body).toContain("⚠️ the model is unavailable");
    expect(posted).toEqual([["$part-0", null]]);
  });
});
