import { describe, expect, it } from "vitest";
import type { IncomingMessage } from "../../src/agents/ports.ts";
import { boundText, parseEvent, type ParsedEvent } from "../../src/matrix/events.ts";
import type { RawEvent } from "../../src/matrix/inbox.ts";

const MAX = 1000;
const ALICE = "@alice:acme.test";
const ADA = "@ai_ada:acme.test";

function messageEvent(content: unknown, overrides: Partial<RawEvent> = {}): RawEvent {
  return {
    event_id: "$event1",
    room_id: "!room:acme.test",
    type: "m.room.message",
    sender: ALICE,
    origin_server_ts: 1_700_000_000_000,
    content,
    ...overrides,
  };
}

function memberEvent(
  content: unknown,
  stateKey: unknown,
  overrides: Partial<RawEvent> = {},
): RawEvent {
  return {
    event_id: "$member1",
    room_id: "!room:acme.test",
    type: "m.room.member",
    sender: ALICE,
    state_key: stateKey,
    content,
    ...overrides,
  };
}

function expectMessage(parsed: ParsedEvent): IncomingMessage {
  if (parsed.kind !== "message")
    throw new Error(`expected a message, got ${JSON.stringify(parsed)}`);
  return parsed.message;
}

function expectIgnored(parsed: ParsedEvent, reason: string | RegExp): void {
  expect(parsed.kind).toBe("ignored");
  if (parsed.kind !== "ignored") return;
  if (typeof reason === "string") expect(parsed.reason).toBe(reason);
  else expect(parsed.reason).toMatch(reason);
}

describe("parseEvent: messages", () => {
  it("a plain text message", () => {
    const message = expectMessage(
      parseEvent(messageEvent({ msgtype: "m.text", body: "hello" }), MAX),
    );
    expect(message).toEqual({
      eventId: "$event1",
      roomId: "!room:acme.test",
      sender: ALICE,
      msgtype: "m.text",
      body: "hello",
      formattedBody: null,
      threadRootId: null,
      replyToEventId: null,
      mentionedUserIds: null,
      sentAt: new Date(1_700_000_000_000),
    });
  });

  it("keeps the HTML body only when the format is org.matrix.custom.html", () => {
    const html = expectMessage(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: "hi Ada",
          format: "org.matrix.custom.html",
          formatted_body: `hi <a href="https://matrix.to/#/${ADA}">Ada</a>`,
        }),
        MAX,
      ),
    );
    expect(html.formattedBody).toBe(`hi <a href="https://matrix.to/#/${ADA}">Ada</a>`);
    const other = expectMessage(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: "x",
          format: "text/weird",
          formatted_body: "<b>x</b>",
        }),
        MAX,
      ),
    );
    expect(other.formattedBody).toBeNull();
  });

  it("emotes and notices are messages with their msgtype", () => {
    expect(
      expectMessage(parseEvent(messageEvent({ msgtype: "m.emote", body: "waves" }), MAX)).msgtype,
    ).toBe("m.emote");
    expect(
      expectMessage(parseEvent(messageEvent({ msgtype: "m.notice", body: "build ok" }), MAX))
        .msgtype,
    ).toBe("m.notice");
  });

  it("a message in a thread names its root", () => {
    const message = expectMessage(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: "in the thread",
          "m.relates_to": {
            rel_type: "m.thread",
            event_id: "$root",
            is_falling_back: true,
            "m.in_reply_to": { event_id: "$previous" },
          },
        }),
        MAX,
      ),
    );
    expect(message.threadRootId).toBe("$root");
    expect(message.replyToEventId).toBe("$previous");
    expect(message.body).toBe("in the thread");
  });

  it("a reply names its target and loses the quoted fallback from the body", () => {
    const message = expectMessage(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: `> <${ADA}> The answer is 4.\n> Anything else?\n\nwhy 4?`,
          format: "org.matrix.custom.html",
          formatted_body: `<mx-reply><blockquote><a href="https://matrix.to/#/!room:acme.test/$answer">In reply to</a> <a href="https://matrix.to/#/${ADA}">${ADA}</a><br>The answer is 4.</blockquote></mx-reply>why 4?`,
          "m.relates_to": { "m.in_reply_to": { event_id: "$answer" } },
        }),
        MAX,
      ),
    );
    expect(message.replyToEventId).toBe("$answer");
    expect(message.threadRootId).toBeNull();
    expect(message.body).toBe("why 4?");
    // The quoted fallback (and the pills in it) must not count as addressing anyone.
    expect(message.formattedBody).toBe("why 4?");
  });

  it("a message that only starts with a quote, and is not a reply, keeps its quote", () => {
    const body = "> to be or not to be\n\nwho wrote this?";
    const message = expectMessage(parseEvent(messageEvent({ msgtype: "m.text", body }), MAX));
    expect(message.body).toBe(body);
  });

  it("m.mentions user ids are kept, invalid ones dropped; absent m.mentions is null", () => {
    const message = expectMessage(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: "hey",
          "m.mentions": { user_ids: [ADA, "not-a-user", "@Bad Name:x"] },
        }),
        MAX,
      ),
    );
    expect(message.mentionedUserIds).toEqual([ADA]);
    const empty = expectMessage(
      parseEvent(messageEvent({ msgtype: "m.text", body: "hey", "m.mentions": {} }), MAX),
    );
    expect(empty.mentionedUserIds).toEqual([]);
  });

  it("a missing or bad origin_server_ts falls back to now", () => {
    const before = Date.now();
    const message = expectMessage(
      parseEvent(
        messageEvent({ msgtype: "m.text", body: "x" }, { origin_server_ts: "yesterday" }),
        MAX,
      ),
    );
    expect(message.sentAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(message.sentAt.getTime()).toBeLessThanOrEqual(Date.now());
  });
});

describe("parseEvent: ignored events", () => {
  it("edits are not answered", () => {
    expectIgnored(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: "* fixed",
          "m.new_content": { msgtype: "m.text", body: "fixed" },
          "m.relates_to": { rel_type: "m.replace", event_id: "$original" },
        }),
        MAX,
      ),
      "edits are not answered",
    );
  });

  it("non-text msgtypes", () => {
    for (const msgtype of ["m.image", "m.file", "m.audio", "m.location"]) {
      expectIgnored(
        parseEvent(messageEvent({ msgtype, body: "cat.png", url: "mxc://acme.test/abc" }), MAX),
        `msgtype ${msgtype} is not handled`,
      );
    }
  });

  it("other event types", () => {
    expectIgnored(
      parseEvent(messageEvent({ name: "Room" }, { type: "m.room.name" }), MAX),
      "event type m.room.name is not handled",
    );
  });

  it("a body that is not a string", () => {
    for (const body of [42, null, ["a"], { text: "a" }]) {
      expectIgnored(
        parseEvent(messageEvent({ msgtype: "m.text", body }), MAX),
        "message content is malformed",
      );
    }
  });

  it("content missing or not an object", () => {
    expectIgnored(parseEvent(messageEvent(undefined), MAX), "message content is malformed");
    expectIgnored(parseEvent(messageEvent("hello"), MAX), "message content is malformed");
    expectIgnored(parseEvent(messageEvent(null), MAX), "message content is malformed");
  });

  it("a msgtype missing", () => {
    expectIgnored(parseEvent(messageEvent({ body: "hi" }), MAX), "message content is malformed");
  });

  it("a malformed relation", () => {
    expectIgnored(
      parseEvent(
        messageEvent({ msgtype: "m.text", body: "hi", "m.relates_to": { event_id: 7 } }),
        MAX,
      ),
      "message content is malformed",
    );
  });

  it("a sender that is not a Matrix ID", () => {
    for (const sender of ["alice", "@alice", "alice:acme.test", "@Alice Smith:acme.test", ""]) {
      expectIgnored(
        parseEvent(messageEvent({ msgtype: "m.text", body: "hi" }, { sender }), MAX),
        "sender is not a valid Matrix ID",
      );
    }
  });
});

describe("parseEvent: membership", () => {
  it("an invite to a DM", () => {
    expect(parseEvent(memberEvent({ membership: "invite", is_direct: true }, ADA), MAX)).toEqual({
      kind: "invite",
      invite: { roomId: "!room:acme.test", invitee: ADA, inviter: ALICE, isDirect: true },
    });
  });

  it("an invite to a group room", () => {
    const parsed = parseEvent(memberEvent({ membership: "invite" }, ADA), MAX);
    expect(parsed).toMatchObject({ kind: "invite", invite: { isDirect: false } });
  });

  it("joins, leaves and bans are membership changes", () => {
    for (const membership of ["join", "leave", "ban"] as const) {
      expect(parseEvent(memberEvent({ membership }, ADA), MAX)).toEqual({
        kind: "membership",
        change: { roomId: "!room:acme.test", userId: ADA, membership },
      });
    }
  });

  it("a missing or invalid state_key is ignored", () => {
    for (const stateKey of [undefined, 5, "", "not-a-user"]) {
      expectIgnored(
        parseEvent(memberEvent({ membership: "join" }, stateKey), MAX),
        "membership event is malformed",
      );
    }
  });

  it("an unknown membership or missing content is ignored", () => {
    expectIgnored(
      parseEvent(memberEvent({ membership: "wandered-off" }, ADA), MAX),
      "membership event is malformed",
    );
    expectIgnored(parseEvent(memberEvent(undefined, ADA), MAX), "membership event is malformed");
  });
});

describe("bounded text", () => {
  it("a huge body is cut to the limit", () => {
    const message = expectMessage(
      parseEvent(messageEvent({ msgtype: "m.text", body: "x".repeat(100_000) }), 500),
    );
    expect(message.body).toBe("x".repeat(500));
  });

  it("a huge formatted body is cut to twice the limit", () => {
    const message = expectMessage(
      parseEvent(
        messageEvent({
          msgtype: "m.text",
          body: "x",
          format: "org.matrix.custom.html",
          formatted_body: "<b>" + "y".repeat(100_000),
        }),
        500,
      ),
    );
    expect(message.formattedBody).toHaveLength(1000);
  });

  it("lone surrogates become well-formed", () => {
    const message = expectMessage(
      parseEvent(messageEvent({ msgtype: "m.text", body: "a\uD800b\uDC00c" }), MAX),
    );
    expect(message.body.isWellFormed()).toBe(true);
    expect(message.body).toBe("a\uFFFDb\uFFFDc");
  });

  it("boundText never splits a surrogate pair", () => {
    expect(boundText("ab😀cd", 3)).toBe("ab");
    expect(boundText("ab😀cd", 4)).toBe("ab😀");
    expect(boundText("😀😀😀", 5)).toBe("😀😀");
    for (let limit = 0; limit <= 12; limit++) {
      const cut = boundText("a😀b😀😀c😀", limit);
      expect(cut.isWellFormed()).toBe(true);
      expect(cut.length).toBeLessThanOrEqual(limit);
      expect(cut).not.toContain("\uFFFD");
      expect("a😀b😀😀c😀".startsWith(cut)).toBe(true);
    }
  });

  it("boundText leaves short well-formed text alone", () => {
    expect(boundText("héllo 😀", 100)).toBe("héllo 😀");
    expect(boundText("", 10)).toBe("");
  });
});
