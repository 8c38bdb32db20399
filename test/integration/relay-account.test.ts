import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantContext } from "../../src/agents/conversation.ts";
import type {
  ChatGateway,
  IncomingInvite,
  IncomingMessage,
  OutgoingMessage,
} from "../../src/agents/ports.ts";
import {
  bridgeBotNetwork,
  bridgeUserNetwork,
  isSetRelaySuccess,
  RelayAccount,
} from "../../src/bridges/relay-account.ts";
import { bridgeStore } from "../../src/bridges/repository.ts";
import type { RoomStateEvent, RoomStateReader } from "../../src/bridges/room-state.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { provisioningState } from "../../src/provisioning/state.ts";
import type { EventId, MatrixUserId, RoomId, TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";
import { seedBridgeRow } from "../support/bridge-rows.ts";

const SERVER = "acme.test";
const RELAY = `@switchboard_relay:${SERVER}` as MatrixUserId;
const BOT = `@switchboard:${SERVER}` as MatrixUserId;
const SLACK_BOT = `@slackbot:${SERVER}` as MatrixUserId;
const DISCORD_BOT = `@discordbot:${SERVER}` as MatrixUserId;
const MANAGEMENT_ROOM = "!management:acme.test" as RoomId;
const HOUR_MS = 60 * 60 * 1000;

interface Call {
  readonly kind: "send" | "join" | "leave";
  readonly user: MatrixUserId;
  readonly roomId: RoomId;
  readonly message?: OutgoingMessage;
  readonly key?: string;
}

/** Records what the relay account does on the homeserver; it must do nothing else. */
class RecordingChat implements ChatGateway {
  readonly calls: Call[] = [];

  send(user: MatrixUserId, roomId: RoomId, message: OutgoingMessage, key: string) {
    this.calls.push({ kind: "send", user, roomId, message, key });
    return Promise.resolve(`$sent-${String(this.calls.length)}` as EventId);
  }
  join(user: MatrixUserId, roomId: RoomId) {
    this.calls.push({ kind: "join", user, roomId });
    return Promise.resolve();
  }
  leave(user: MatrixUserId, roomId: RoomId) {
    this.calls.push({ kind: "leave", user, roomId });
    return Promise.resolve();
  }
  edit(): Promise<EventId> {
    return Promise.reject(new Error("the relay account never edits"));
  }
  setTyping(): Promise<void> {
    return Promise.reject(new Error("the relay account never types"));
  }
  ensureProfile(): Promise<void> {
    return Promise.reject(new Error("the relay account has no profile to set"));
  }
  joinedMemberCount(): Promise<number> {
    return Promise.reject(new Error("unexpected"));
  }
  invite(): Promise<void> {
    return Promise.reject(new Error("unexpected"));
  }
  redact(): Promise<void> {
    return Promise.reject(new Error("unexpected"));
  }
  sendFile(): Promise<EventId> {
    return Promise.reject(new Error("unexpected"));
  }
}

/** Room state as the homeserver would show it to the relay account. */
class FakeRoomState implements RoomStateReader {
  readonly rooms = new Map<RoomId, RoomStateEvent[]>();

  state(asUser: MatrixUserId, roomId: RoomId): Promise<readonly RoomStateEvent[] | null> {
    expect(asUser).toBe(RELAY);
    return Promise.resolve(this.rooms.get(roomId) ?? null);
  }

  portal(roomId: RoomId, name: string): void {
    this.rooms.set(roomId, [
      stateEvent("m.room.name", "", { name }),
      stateEvent("m.bridge", "fi.mau.slack://slack/T1/C1", { bridgebot: SLACK_BOT }),
      stateEvent("m.room.member", RELAY, { membership: "join" }),
    ]);
  }

  directChat(roomId: RoomId): void {
    this.rooms.set(roomId, [
      stateEvent("m.room.member", SLACK_BOT, { membership: "join" }),
      stateEvent("m.room.member", RELAY, { membership: "join" }),
    ]);
  }
}

function stateEvent(type: string, stateKey: string, content: Record<string, unknown>) {
  return { type, state_key: stateKey, sender: SLACK_BOT, content };
}

let eventCounter = 0;
function botMessage(sender: MatrixUserId, roomId: RoomId, body: string): IncomingMessage {
  eventCounter += 1;
  return {
    eventId: `$bot-${String(eventCounter)}` as EventId,
    roomId,
    sender,
    msgtype: "m.notice",
    body,
    formattedBody: null,
    threadRootId: null,
    replyToEventId: null,
    mentionedUserIds: null,
    sentAt: new Date(),
  };
}

const invite = (roomId: RoomId, inviter: MatrixUserId, isDirect = false): IncomingInvite => ({
  roomId,
  invitee: RELAY,
  inviter,
  isDirect,
});

describe("success texts of the real bridges", () => {
  it("tells set-relay successes from refusals", () => {
    expect(
      isSetRelaySuccess(
        "Messages sent by users who haven't logged in will now be relayed through Acme (@switchboard_relay:acme.test's login)",
      ),
    ).toBe(true);
    expect(isSetRelaySuccess("Saved webhook Switchboard (123) as portal relay webhook")).toBe(true);
    expect(isSetRelaySuccess("This channel already has a relay webhook Switchboard (123)")).toBe(
      true,
    );
    expect(
      isSetRelaySuccess("You're not logged in and none of the default relay users are in the chat"),
    ).toBe(false);
    expect(
      isSetRelaySuccess("This channel has a relay webhook set, but getting its info failed: x"),
    ).toBe(false);
  });

  it("knows bridge bots and ghosts only on the tenant's own server", () => {
    expect(bridgeBotNetwork(SLACK_BOT, SERVER)).toBe("slack");
    expect(bridgeBotNetwork("@slackbot:elsewhere.test" as MatrixUserId, SERVER)).toBeUndefined();
    expect(bridgeBotNetwork(`@slack_t1-u1:${SERVER}` as MatrixUserId, SERVER)).toBeUndefined();
    expect(bridgeUserNetwork(`@slack_t1-u1:${SERVER}` as MatrixUserId, SERVER)).toBe("slack");
    expect(bridgeUserNetwork(`@telegrambot:${SERVER}` as MatrixUserId, SERVER)).toBe("telegram");
    expect(bridgeUserNetwork(`@alice:${SERVER}` as MatrixUserId, SERVER)).toBeUndefined();
  });
});

describe.each(BACKENDS)("relay account on %s", (kind) => {
  let database: TestDatabase;
  let tenantId: TenantId;
  let bareTenantId: TenantId;
  let now = Date.parse("2026-11-22T10:00:00Z");

  const relay = (): RelayAccount =>
    new RelayAccount({
      db: database.knex,
      log: createLogger({ level: "silent", pretty: false }),
      now: () => now,
    });

  const context = (id: TenantId, chat: ChatGateway, roomState: RoomStateReader): TenantContext => ({
    tenant: {
      id,
      slug: "acme",
      name: "Acme",
      status: "active",
      plan: "enterprise",
      deleteAfter: null,
      createdAt: new Date(),
    },
    serverName: SERVER,
    botUserId: BOT,
    relayUserId: RELAY,
    chat,
    roomState,
  });

  const room = (roomId: RoomId, id: TenantId = tenantId) =>
    withTenant(database.knex, id, (trx) => bridgeStore.findRoom(trx, id, roomId));
  const bridge = (id: TenantId = tenantId) =>
    withTenant(database.knex, id, (trx) => bridgeStore.find(trx, id, "slack"));

  const connectSlack = (id: TenantId): Promise<void> => seedBridgeRow(database.knex, id, "slack");

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    tenantId = (await seedTenant(database.knex, "acme")).tenantId;
    bareTenantId = (await seedTenant(database.knex, "bare")).tenantId;
    await connectSlack(tenantId);
    await connectSlack(bareTenantId);
    await provisioningState.adopt(database.knex, tenantId, "local", "secret");
    await provisioningState.update(database.knex, tenantId, {
      management_room_id: MANAGEMENT_ROOM,
    });
  });

  afterAll(async () => {
    await database?.drop();
  });

  it("joins a portal of its bridge, records it and asks once to be its relay, even when the invite comes again", async () => {
    const chat = new RecordingChat();
    const state = new FakeRoomState();
    const portal = "!general:acme.test" as RoomId;
    state.portal(portal, "general");
    const account = relay();
    await account.invited(context(tenantId, chat, state), invite(portal, SLACK_BOT));
    await account.invited(context(tenantId, chat, state), invite(portal, SLACK_BOT));

    expect(await room(portal)).toMatchObject({
      network: "slack",
      remoteName: "general",
      relayState: "pending",
    });
    const sends = chat.calls.filter((call) => call.kind === "send");
    expect(sends).toHaveLength(2);
    expect(sends[0]).toMatchObject({
      user: RELAY,
      roomId: portal,
      message: { msgtype: "m.text", body: "!slack set-relay" },
    });
    // The same transaction both times: the homeserver posts it once.
    expect(sends[1]?.key).toBe(sends[0]?.key);

    await account.bridgeBotMessage(
      context(tenantId, chat, state),
      botMessage(
        SLACK_BOT,
        portal,
        "Messages sent by users who haven't logged in will now be relayed through Acme",
      ),
    );
    expect((await room(portal))?.relayState).toBe("set");
    // A relay already set is not asked for again.
    await account.invited(context(tenantId, chat, state), invite(portal, SLACK_BOT));
    expect(chat.calls.filter((call) => call.kind === "send")).toHaveLength(2);
  });

  it("keeps a refusal with the bot's words until a success, and ignores other chatter and other bridges' bots", async () => {
    const chat = new RecordingChat();
    const state = new FakeRoomState();
    const portal = "!random:acme.test" as RoomId;
    state.portal(portal, "random");
    const account = relay();
    const ctx = context(tenantId, chat, state);
    await account.invited(ctx, invite(portal, `@slack_t1-u2:${SERVER}` as MatrixUserId));
    const refusal = botMessage(SLACK_BOT, portal, "You're not logged in");
    await account.bridgeBotMessage(ctx, refusal);
    await account.bridgeBotMessage(ctx, refusal);
    expect(await room(portal)).toMatchObject({
      relayState: "failed",
      lastError: "You're not logged in",
    });

    await account.bridgeBotMessage(ctx, botMessage(SLACK_BOT, portal, "Something else"));
    await account.bridgeBotMessage(
      ctx,
      botMessage(DISCORD_BOT, portal, "Saved webhook x (1) as portal relay webhook"),
    );
    expect(await room(portal)).toMatchObject({
      relayState: "failed",
      lastError: "You're not logged in",
    });

    await account.bridgeBotMessage(
      ctx,
      botMessage(
        SLACK_BOT,
        portal,
        "Messages sent by users who haven't logged in will now be relayed through Acme",
      ),
    );
    expect(await room(portal)).toMatchObject({ relayState: "set", lastError: null });
    // Nothing reached the management room: portal answers are not bridge notices.
    expect(chat.calls.filter((call) => call.roomId === MANAGEMENT_ROOM)).toHaveLength(0);

    await account.left(ctx, portal);
    expect(await room(portal)).toBeUndefined();
  });

  it("declines invites from people, from other servers and from bridges the tenant does not have or is removing", async () => {
    const chat = new RecordingChat();
    const state = new FakeRoomState();
    const account = relay();
    const ctx = context(tenantId, chat, state);
    const cases: [RoomId, MatrixUserId][] = [
      ["!a:acme.test" as RoomId, `@alice:${SERVER}` as MatrixUserId],
      ["!b:acme.test" as RoomId, "@slackbot:elsewhere.test" as MatrixUserId],
      ["!c:acme.test" as RoomId, DISCORD_BOT],
    ];
    for (const [roomId, inviter] of cases) {
      state.portal(roomId, "x");
      await account.invited(ctx, invite(roomId, inviter));
    }
    expect(chat.calls).toEqual(cases.map(([roomId]) => ({ kind: "leave", user: RELAY, roomId })));

    const removing = new RecordingChat();
    await withTenant(database.knex, bareTenantId, (trx) =>
      bridgeStore.markDisabled(trx, bareTenantId, "slack"),
    );
    const portal = "!d:acme.test" as RoomId;
    state.portal(portal, "x");
    await account.invited(context(bareTenantId, removing, state), invite(portal, SLACK_BOT));
    expect(removing.calls).toEqual([{ kind: "leave", user: RELAY, roomId: portal }]);
    for (const [roomId] of cases) expect(await room(roomId)).toBeUndefined();
    expect(await room(portal, bareTenantId)).toBeUndefined();
  });

  it("joins the bridge bot's direct chat as its management room, without recording it or sending commands", async () => {
    const chat = new RecordingChat();
    const state = new FakeRoomState();
    const dm = "!dm:acme.test" as RoomId;
    state.directChat(dm);
    await relay().invited(context(tenantId, chat, state), invite(dm, SLACK_BOT, true));
    expect(chat.calls).toEqual([{ kind: "join", user: RELAY, roomId: dm }]);
    expect(await room(dm)).toBeUndefined();
  });

  it("passes the bot's notices in its management room to the admins once per text and hour, and records them", async () => {
    const chat = new RecordingChat();
    const state = new FakeRoomState();
    const dm = "!dm2:acme.test" as RoomId;
    state.directChat(dm);
    const account = relay();
    const ctx = context(tenantId, chat, state);
    const notice = botMessage(SLACK_BOT, dm, "You're not logged in");
    await account.bridgeBotMessage(ctx, notice);
    await account.bridgeBotMessage(ctx, notice);
    await account.bridgeBotMessage(ctx, botMessage(SLACK_BOT, dm, "You're not logged in"));
    await account.bridgeBotMessage(ctx, botMessage(SLACK_BOT, dm, "Bad credentials"));
    now += HOUR_MS;
    await account.bridgeBotMessage(ctx, botMessage(SLACK_BOT, dm, "You're not logged in"));

    expect(
      chat.calls.map((call) => [call.kind, call.user, call.roomId, call.message?.body]),
    ).toEqual([
      ["send", BOT, MANAGEMENT_ROOM, "Slack bridge: You're not logged in"],
      ["send", BOT, MANAGEMENT_ROOM, "Slack bridge: Bad credentials"],
      ["send", BOT, MANAGEMENT_ROOM, "Slack bridge: You're not logged in"],
    ]);
    expect(chat.calls[0]?.message?.msgtype).toBe("m.notice");
    expect(new Set(chat.calls.map((call) => call.key)).size).toBe(3);
    expect((await bridge())?.lastError).toBe("You're not logged in");
  });

  it("records a notice without posting when the tenant has no management room, and ignores rooms the relay is not in and bridges the tenant lacks", async () => {
    const chat = new RecordingChat();
    const state = new FakeRoomState();
    const dm = "!dm3:acme.test" as RoomId;
    state.directChat(dm);
    const account = relay();
    await account.bridgeBotMessage(
      context(bareTenantId, chat, state),
      botMessage(SLACK_BOT, dm, "Logged out"),
    );
    expect((await bridge(bareTenantId))?.lastError).toBe("Logged out");

    await account.bridgeBotMessage(
      context(tenantId, chat, state),
      botMessage(SLACK_BOT, "!elsewhere:acme.test" as RoomId, "Not for the relay"),
    );
    await account.bridgeBotMessage(
      context(tenantId, chat, state),
      botMessage(DISCORD_BOT, dm, "Discord is not connected here"),
    );
    expect(chat.calls).toEqual([]);
    expect((await bridge())?.lastError).not.toBe("Not for the relay");
  });
});
