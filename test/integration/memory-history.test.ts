import type { Knex } from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { exportPersonData } from "../../src/memory/export.ts";
import { rememberFact } from "../../src/memory/facts.ts";
import {
  deleteHistoryOfPerson,
  HISTORY_MESSAGE_OVERHEAD_TOKENS,
  historyOfPerson,
  recentHistory,
  recordMessage,
  type NewMessage,
} from "../../src/memory/history.ts";
import { linkIdentities, resolvePerson } from "../../src/memory/people.ts";
import { estimateTokens } from "../../src/memory/tokens.ts";
import type {
  AgentId,
  EventId,
  MatrixUserId,
  PersonId,
  RoomId,
  TenantId,
} from "../../src/shared/ids.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

const ROOM = "!general:acme.test" as RoomId;
const OTHER_ROOM = "!random:acme.test" as RoomId;
const ALICE = "@alice:acme.test" as MatrixUserId;
const BASE_TIME_MS = Date.parse("2026-11-01T09:00:00Z");

describe.each(BACKENDS)("history (%s)", (kind) => {
  let database: TestDatabase;
  let tenant: TenantId;
  let other: TenantId;
  let agent: AgentId;
  let alice: PersonId;
  let minute = 0;

  const inTenant = <T>(work: (trx: Knex.Transaction) => Promise<T>, tenantId = tenant) =>
    withTenant(database.knex, tenantId, work);
  const message = (eventId: string, body: string, extra: Partial<NewMessage> = {}): NewMessage => {
    minute += 1;
    return {
      roomId: ROOM,
      threadRootId: null,
      eventId: eventId as EventId,
      sender: ALICE,
      personId: alice,
      agentId: null,
      platform: "matrix",
      body,
      sentAt: new Date(BASE_TIME_MS + minute * 60_000),
      ...extra,
    };
  };
  const record = (...messages: NewMessage[]) =>
    inTenant(async (trx) => {
      for (const each of messages) await recordMessage(trx, each);
    });
  const window = (
    threadRootId: string | null,
    tokenBudget = 10_000,
    maxMessages = 100,
    roomId = ROOM,
  ) =>
    inTenant(async (trx) =>
      (
        await recentHistory(trx, {
          roomId,
          threadRootId: threadRootId as EventId | null,
          tokenBudget,
          maxMessages,
        })
      ).map((each) => each.eventId),
    );

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const acme = await seedTenant(database.knex, "acme", ["ada"]);
    tenant = acme.tenantId;
    agent = acme.agents[0]!;
    other = (await seedTenant(database.knex, "globex")).tenantId;
    alice = await inTenant((trx) => resolvePerson(trx, ALICE, "matrix", "Alice"));

    await record(
      message("$m1", "good morning"),
      message("$root", "who is on call this week?"),
      message("$t1", "I think it is Bob", { threadRootId: "$root" as EventId }),
      message("$m2", "lunch at noon?"),
      message("$t2", "no, Bob swapped with Carol", {
        threadRootId: "$root" as EventId,
        sender: "@ada:acme.test" as MatrixUserId,
        personId: null,
        agentId: agent,
      }),
      message("$m3", "sounds good"),
      message("$x1", "elsewhere", { roomId: OTHER_ROOM }),
    );
  });
  afterAll(() => database.drop());

  it("records each event once", async () => {
    const again = await inTenant((trx) => recordMessage(trx, message("$m1", "a replayed copy")));
    expect(again).toBe(false);
    const fresh = await inTenant((trx) => recordMessage(trx, message("$m4", "fresh")));
    expect(fresh).toBe(true);
    const bodies = await inTenant((trx) => trx("messages").where("event_id", "$m1").pluck("body"));
    expect(bodies).toEqual(["good morning"]);
  });

  it("stores text PostgreSQL refuses (a NUL from a model, a lone surrogate) with U+FFFD", async () => {
    const stored = await inTenant((trx) =>
      recordMessage(trx, message("$nul", "before\u0000after \uD800 end")),
    );
    expect(stored).toBe(true);
    const bodies = await inTenant((trx) => trx("messages").where("event_id", "$nul").pluck("body"));
    expect(bodies).toEqual(["before\uFFFDafter \uFFFD end"]);
    await inTenant((trx) => trx("messages").where("event_id", "$nul").delete());
  });

  it("returns the main timeline without thread messages, oldest first", async () => {
    expect(await window(null)).toEqual(["$m1", "$root", "$m2", "$m3", "$m4"]);
    expect(await window(null, 10_000, 2)).toEqual(["$m3", "$m4"]);
    expect(await window(null, 10_000, 100, OTHER_ROOM)).toEqual(["$x1"]);
  });

  it("returns a thread with its root", async () => {
    expect(await window("$root")).toEqual(["$root", "$t1", "$t2"]);
    const [last] = await inTenant((trx) =>
      recentHistory(trx, {
        roomId: ROOM,
        threadRootId: "$root" as EventId,
        tokenBudget: 1_000,
        maxMessages: 10,
      }),
    ).then((messages) => messages.slice(-1));
    expect(last).toMatchObject({ agentId: agent, personId: null, sender: "@ada:acme.test" });
  });

  it("keeps the newest messages, without gaps, when the budget cuts", async () => {
    const cost = (body: string) => estimateTokens(body) + HISTORY_MESSAGE_OVERHEAD_TOKENS;
    const lastTwo = cost("sounds good") + cost("fresh");
    expect(await window(null, lastTwo)).toEqual(["$m3", "$m4"]);
    expect(await window(null, lastTwo + cost("lunch at noon?") - 1)).toEqual(["$m3", "$m4"]);
    expect(await window(null, 0)).toEqual([]);
    // A thread keeps its root first, then the newest replies that fit.
    const rootAndLast = cost("who is on call this week?") + cost("no, Bob swapped with Carol");
    expect(await window("$root", rootAndLast)).toEqual(["$root", "$t2"]);
  });

  it("keeps tenants' history apart", async () => {
    const seen = await inTenant(
      (trx) =>
        recentHistory(trx, {
          roomId: ROOM,
          threadRootId: null,
          tokenBudget: 1_000,
          maxMessages: 10,
        }),
      other,
    );
    expect(seen).toEqual([]);
  });

  it("lists a person's messages across rooms and exports everything about them", async () => {
    const mine = await inTenant((trx) => historyOfPerson(trx, alice));
    expect(mine.map((each) => each.eventId)).toEqual([
      "$m1",
      "$root",
      "$t1",
      "$m2",
      "$m3",
      "$x1",
      "$m4",
    ]);
    expect(mine.find((each) => each.eventId === "$x1")?.roomId).toBe(OTHER_ROOM);

    await inTenant(async (trx) => {
      await linkIdentities(trx, ALICE, "@telegram_99:acme.test" as MatrixUserId);
      await rememberFact(trx, {
        agentId: null,
        subject: { kind: "person", personId: alice },
        key: "on call",
        content: "my on call week is the first of the month",
        source: "explicit",
        sourceEventId: "$m1" as EventId,
        sourceRoomId: ROOM,
      });
      await rememberFact(trx, {
        agentId: agent,
        subject: { kind: "person", personId: alice },
        key: "on call",
        content: "my on call week is the last of the month",
        source: "tool",
      });
      await rememberFact(trx, {
        agentId: agent,
        subject: { kind: "person", personId: alice },
        key: "on call",
        content: "my on call week is the second of the month",
        source: "tool",
      });
    });
    const exported = await inTenant((trx) => exportPersonData(trx, alice));
    const roundTripped = JSON.parse(JSON.stringify(exported)) as typeof exported;
    expect(roundTripped).toEqual(exported);
    expect(exported.person).toMatchObject({ id: alice, displayName: "Alice" });
    expect(exported.identities.map((each) => each.userId)).toEqual([
      "@alice:acme.test",
      "@telegram_99:acme.test",
    ]);
    expect(exported.facts).toHaveLength(3);
    expect(exported.facts.find((fact) => fact.sourceEventId === "$m1")).toMatchObject({
      visibility: "shared",
      source: "explicit",
      sourceRoomId: ROOM,
      validTo: null,
    });
    const superseded = exported.facts.find((fact) => fact.content.includes("last of the month"));
    expect(superseded?.supersededBy).toBeTruthy();
    expect(superseded?.validTo).not.toBeNull();
    expect(superseded?.visibility).toBe(agent);
    expect(exported.messages.map((each) => each.eventId)).toContain("$x1");

    await expect(inTenant((trx) => exportPersonData(trx, alice), other)).rejects.toMatchObject({
      code: "not_found",
    });
  });

  it("erases a person's messages", async () => {
    const erased = await inTenant((trx) => deleteHistoryOfPerson(trx, alice));
    expect(erased).toBe(7);
    expect(await inTenant((trx) => historyOfPerson(trx, alice))).toEqual([]);
    expect(await window("$root")).toEqual(["$t2"]);
  });
});
