import { describe, expect, it } from "vitest";
import { AnswerStream, type AnswerStreamOptions } from "../../src/agents/answer-stream.ts";
import type { ChatGateway, OutgoingMessage } from "../../src/agents/ports.ts";
import type { EventId, MatrixUserId, RoomId } from "../../src/shared/ids.ts";

const AGENT = "@ai_ada:acme.test" as MatrixUserId;
const ROOM = "!room:acme.test" as RoomId;
const QUESTION = "$question" as EventId;
const THROTTLE_MS = 700;
const MARK = " …";

interface Recorded {
  readonly kind: "send" | "edit" | "posted";
  readonly at: number;
  readonly key?: string;
  readonly original?: EventId;
  readonly message?: OutgoingMessage;
  readonly eventId?: EventId;
}

/** A ChatGateway that records sends and edits; only send and edit are used by AnswerStream. */
class RecordingChat implements ChatGateway {
  readonly calls: Recorded[] = [];
  readonly #clock: () => number;
  #nextId = 0;

  constructor(clock: () => number) {
    this.#clock = clock;
  }

  send(
    sender: MatrixUserId,
    roomId: RoomId,
    message: OutgoingMessage,
    key: string,
  ): Promise<EventId> {
    expect(sender).toBe(AGENT);
    expect(roomId).toBe(ROOM);
    this.#nextId += 1;
    const eventId = `$sent-${this.#nextId}` as EventId;
    this.calls.push({ kind: "send", at: this.#clock(), key, message, eventId });
    return Promise.resolve(eventId);
  }

  edit(
    sender: MatrixUserId,
    roomId: RoomId,
    original: EventId,
    message: OutgoingMessage,
    key: string,
  ): Promise<EventId> {
    expect(sender).toBe(AGENT);
    expect(roomId).toBe(ROOM);
    this.#nextId += 1;
    const eventId = `$edit-${this.#nextId}` as EventId;
    this.calls.push({ kind: "edit", at: this.#clock(), key, original, message, eventId });
    return Promise.resolve(eventId);
  }

  setTyping(): Promise<void> {
    return Promise.reject(new Error("AnswerStream must not set typing"));
  }
  join(): Promise<void> {
    return Promise.reject(new Error("AnswerStream must not join"));
  }
  leave(): Promise<void> {
    return Promise.reject(new Error("AnswerStream must not leave"));
  }
  ensureProfile(): Promise<void> {
    return Promise.reject(new Error("AnswerStream must not touch profiles"));
  }
  joinedMemberCount(): Promise<number> {
    return Promise.reject(new Error("AnswerStream must not count members"));
  }
  invite(): Promise<void> {
    return Promise.reject(new Error("AnswerStream must not invite"));
  }
  redact(): Promise<void> {
    return Promise.reject(new Error("AnswerStream must not redact"));
  }
  sendFile(): Promise<EventId> {
    return Promise.reject(new Error("AnswerStream must not send files"));
  }

  get sends(): Recorded[] {
    return this.calls.filter((call) => call.kind === "send");
  }
  get edits(): Recorded[] {
    return this.calls.filter((call) => call.kind === "edit");
  }
}

interface Harness {
  readonly stream: AnswerStream;
  readonly chat: RecordingChat;
  /** Moves the injected clock to an absolute time. */
  at(ms: number): void;
}

function harness(overrides: Partial<AnswerStreamOptions> = {}): Harness {
  let time = 0;
  const clock = (): number => time;
  const chat = new RecordingChat(clock);
  const stream = new AnswerStream({
    chat,
    sender: AGENT,
    roomId: ROOM,
    threadRootId: null,
    replyTo: QUESTION,
    idempotencyKey: "turn/$question/agent-1",
    existingEventId: null,
    editThrottleMs: THROTTLE_MS,
    render: (markdown) => `<p>${markdown}</p>`,
    onPosted: (eventId) => {
      chat.calls.push({ kind: "posted", at: time, eventId });
      return Promise.resolve();
    },
    now: clock,
    ...overrides,
  });
  return {
    stream,
    chat,
    at: (ms) => {
      time = ms;
    },
  };
}

/** A slow answer: a token every 100 ms for 3 s, then finish. */
async function streamSlowly(h: Harness): Promise<EventId> {
  for (let i = 1; i <= 30; i++) {
    h.at(i * 100);
    await h.stream.append(`w${i} `);
  }
  h.at(3050);
  return h.stream.finish();
}

const SLOW_TEXT = Array.from({ length: 30 }, (_, i) => `w${i + 1} `).join("");

describe("AnswerStream", () => {
  it("a short answer finished inside the throttle window is exactly one send and no edit", async () => {
    const h = harness();
    h.at(100);
    await h.stream.append("The answer ");
    h.at(400);
    await h.stream.append("is 4.");
    h.at(650);
    const eventId = await h.stream.finish();

    expect(h.chat.edits).toEqual([]);
    expect(h.chat.sends).toHaveLength(1);
    const [send] = h.chat.sends;
    expect(send?.key).toBe("turn/$question/agent-1/post");
    expect(send?.message).toEqual({
      msgtype: "m.text",
      body: "The answer is 4.",
      html: "<p>The answer is 4.</p>",
      threadRootId: null,
      replyTo: QUESTION,
    });
    expect(eventId).toBe(send?.eventId);
    expect(h.stream.eventId).toBe(eventId);
    expect(h.stream.text).toBe("The answer is 4.");
    expect(h.chat.calls.filter((call) => call.kind === "posted")).toEqual([
      { kind: "posted", at: 650, eventId },
    ]);
  });

  it("a slow answer is one send plus edits spaced by at least the throttle", async () => {
    const h = harness();
    const eventId = await streamSlowly(h);

    expect(h.chat.sends).toHaveLength(1);
    const [send] = h.chat.sends;
    expect(send?.at).toBeGreaterThanOrEqual(THROTTLE_MS);
    expect(send?.message?.body.endsWith(MARK)).toBe(true);

    const edits = h.chat.edits;
    expect(edits.length).toBeGreaterThanOrEqual(3);
    // 30 tokens over 3 s with a 700 ms throttle: far fewer events than tokens.
    expect(h.chat.sends.length + edits.length).toBeLessThanOrEqual(6);
    for (const edit of edits) expect(edit.original).toBe(eventId);

    const shown = [send!, ...edits.slice(0, -1)];
    for (let i = 1; i < shown.length; i++) {
      expect(shown[i]!.at - shown[i - 1]!.at).toBeGreaterThanOrEqual(THROTTLE_MS);
    }
    // Every progress update shows the text so far and the progress mark.
    for (const progress of shown) {
      expect(progress.message?.body.endsWith(MARK)).toBe(true);
      expect(SLOW_TEXT.startsWith(progress.message!.body.slice(0, -MARK.length))).toBe(true);
    }
  });

  it("the final edit has the full text without the progress mark", async () => {
    const h = harness();
    await streamSlowly(h);
    const final = h.chat.edits.at(-1);
    expect(final?.key).toBe("turn/$question/agent-1/final");
    expect(final?.at).toBe(3050);
    expect(final?.message).toEqual({
      msgtype: "m.text",
      body: SLOW_TEXT,
      html: `<p>${SLOW_TEXT}</p>`,
      threadRootId: null,
      replyTo: QUESTION,
    });
    expect(final?.message?.body).not.toContain("…");
  });

  it("records the posted event id before any edit", async () => {
    const h = harness();
    await streamSlowly(h);
    const kinds = h.chat.calls.map((call) => call.kind);
    expect(kinds.slice(0, 3)).toEqual(["send", "posted", "edit"]);
    expect(kinds.filter((kind) => kind === "posted")).toHaveLength(1);
  });

  it("idempotency keys are distinct per edit and the same when the turn is replayed", async () => {
    const first = harness();
    await streamSlowly(first);
    const keys = first.chat.calls.filter((call) => call.kind !== "posted").map((call) => call.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys[0]).toBe("turn/$question/agent-1/post");
    expect(keys.at(-1)).toBe("turn/$question/agent-1/final");
    for (const key of keys.slice(1, -1))
      expect(key).toMatch(/^turn\/\$question\/agent-1\/edit\/\d+$/);

    const replay = harness();
    await streamSlowly(replay);
    expect(
      replay.chat.calls.filter((call) => call.kind !== "posted").map((call) => call.key),
    ).toEqual(keys);
  });

  it("keys of different turns never collide", async () => {
    const a = harness({ idempotencyKey: "turn/$a/agent-1" });
    const b = harness({ idempotencyKey: "turn/$b/agent-1" });
    await streamSlowly(a);
    await streamSlowly(b);
    const keysOf = (h: Harness): string[] => h.chat.calls.flatMap((call) => call.key ?? []);
    const overlap = keysOf(a).filter((key) => keysOf(b).includes(key));
    expect(overlap).toEqual([]);
  });

  it("with existingEventId it edits the earlier reply instead of posting a new one", async () => {
    const existing = "$posted-by-earlier-run" as EventId;
    const h = harness({ existingEventId: existing });
    expect(h.stream.eventId).toBe(existing);
    h.at(100);
    await h.stream.append("Recovered answer.");
    h.at(200);
    const eventId = await h.stream.finish();

    expect(eventId).toBe(existing);
    expect(h.chat.sends).toEqual([]);
    expect(h.chat.calls.filter((call) => call.kind === "posted")).toEqual([]);
    expect(h.chat.edits).toHaveLength(1);
    expect(h.chat.edits[0]).toMatchObject({
      original: existing,
      key: "turn/$question/agent-1/final",
      message: { body: "Recovered answer." },
    });
  });

  it("when an earlier run may have posted unrecorded, the post is followed by an edit to this run's text", async () => {
    // Regression (issue 8, runtime killed mid-burst): the earlier run posted
    // "Hel …" and died before recording it; the homeserver answers the same
    // transaction id with that post, so a lone post left "Hel …" for good.
    const h = harness({ mayHavePosted: true });
    h.at(100);
    await h.stream.append("Recovered answer.");
    h.at(200);
    const eventId = await h.stream.finish();

    expect(h.chat.sends).toHaveLength(1);
    expect(h.chat.sends[0]).toMatchObject({ key: "turn/$question/agent-1/post" });
    expect(eventId).toBe(h.chat.sends[0]!.eventId);
    expect(h.chat.calls.map((call) => call.kind)).toEqual(["send", "posted", "edit"]);
    expect(h.chat.edits[0]).toMatchObject({
      original: eventId,
      key: "turn/$question/agent-1/final",
      message: { body: "Recovered answer." },
    });
  });

  it("a whitespace-only start posts nothing until there is text", async () => {
    const h = harness();
    h.at(1000);
    await h.stream.append("\n  ");
    expect(h.chat.calls).toEqual([]);
    h.at(1100);
    await h.stream.append("Hi");
    expect(h.chat.sends).toHaveLength(1);
    expect(h.chat.sends[0]?.message?.body).toBe(`\n  Hi${MARK}`);
  });

  it("an empty answer finishes with a placeholder rather than an empty message", async () => {
    const h = harness();
    h.at(10);
    await h.stream.finish();
    expect(h.chat.sends).toHaveLength(1);
    expect(h.chat.sends[0]?.message?.body).toBe("(no answer)");
  });

  it("passes the thread and reply target to every send and edit", async () => {
    const root = "$root" as EventId;
    const h = harness({ threadRootId: root, replyTo: QUESTION });
    await streamSlowly(h);
    for (const call of [...h.chat.sends, ...h.chat.edits]) {
      expect(call.message?.threadRootId).toBe(root);
      expect(call.message?.replyTo).toBe(QUESTION);
    }
  });

  describe("fail()", () => {
    it("with no text yet, posts a notice", async () => {
      const h = harness();
      h.at(50);
      const eventId = await h.stream.fail("The model did not answer in time.");
      expect(h.chat.edits).toEqual([]);
      expect(h.chat.sends).toHaveLength(1);
      expect(h.chat.sends[0]?.message).toMatchObject({
        msgtype: "m.notice",
        body: "⚠️ The model did not answer in time.",
      });
      expect(eventId).toBe(h.chat.sends[0]?.eventId);
    });

    it("with text already shown, edits it to keep the text and add the notice", async () => {
      const h = harness();
      h.at(800);
      await h.stream.append("Partial answer");
      expect(h.chat.sends).toHaveLength(1);
      h.at(900);
      const eventId = await h.stream.fail("The model stopped.");
      expect(eventId).toBe(h.chat.sends[0]?.eventId);
      expect(h.chat.edits).toHaveLength(1);
      expect(h.chat.edits[0]).toMatchObject({
        key: "turn/$question/agent-1/final",
        original: eventId,
        message: { msgtype: "m.text", body: "Partial answer\n\n⚠️ The model stopped." },
      });
    });

    it("with text not yet shown, posts it once together with the notice", async () => {
      const h = harness();
      h.at(100);
      await h.stream.append("Partial answer");
      h.at(200);
      await h.stream.fail("The model stopped.");
      expect(h.chat.edits).toEqual([]);
      expect(h.chat.sends).toHaveLength(1);
      expect(h.chat.sends[0]?.message).toMatchObject({
        msgtype: "m.text",
        body: "Partial answer\n\n⚠️ The model stopped.",
      });
    });
  });

  it("never makes the model stream wait for the homeserver: updates run in the background, finish waits for them", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const h = harness();
    const { stream, chat } = h;
    const slowSend = chat.send.bind(chat);
    chat.send = async (...args) => {
      await gate;
      return slowSend(...args);
    };
    h.at(THROTTLE_MS);
    const first = stream.append("one ");
    // While the first update waits on the homeserver, more text keeps coming without waiting.
    h.at(THROTTLE_MS * 3);
    void stream.append("two ");
    h.at(THROTTLE_MS * 5);
    void stream.append("three");
    expect(chat.sends).toHaveLength(0);
    const finished = stream.finish();
    release();
    await first;
    expect(await finished).toBe(chat.sends[0]!.eventId);
    expect(chat.sends).toHaveLength(1);
    expect(chat.edits.at(-1)!.message!.body).toBe("one two three");
  });

  it("a failed background update is reported by finish, not lost", async () => {
    const h = harness();
    const { stream, chat } = h;
    chat.send = () => Promise.reject(new Error("homeserver down"));
    h.at(THROTTLE_MS);
    await stream.append("text");
    await expect(stream.finish()).rejects.toThrow("homeserver down");
  });
});
