import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  acceptTransaction,
  markEvent,
  pendingEvents,
  pruneInbox,
  type RawEvent,
} from "../../src/matrix/inbox.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

interface StoredRow {
  seq: number;
  tenant_id: string;
  event_id: string;
  status: string;
  attempts: number;
  error: string | null;
  handled_at: Date | null;
}

let counter = 0;
/** A room message event with a fresh id unless one is given. */
function event(overrides: Partial<RawEvent> = {}): RawEvent {
  counter += 1;
  return {
    event_id: `$event-${counter}`,
    room_id: "!room:acme.test",
    type: "m.room.message",
    sender: "@alice:acme.test",
    origin_server_ts: 1_700_000_000_000 + counter,
    content: { msgtype: "m.text", body: `message ${counter}` },
    ...overrides,
  };
}

describe.each(BACKENDS)("appservice inbox on %s", (kind) => {
  let database: TestDatabase;
  let tenantA: TenantId;
  let tenantB: TenantId;

  const insertTenant = async (slug: string): Promise<TenantId> =>
    (await seedTenant(database.knex, slug)).tenantId;

  /** Rows as the service connection sees them (all tenants). */
  async function storedRows(tenantId: TenantId): Promise<StoredRow[]> {
    const rows: StoredRow[] = await database
      .knex("inbound_events")
      .where({ tenant_id: tenantId })
      .orderBy("seq")
      .select("seq", "tenant_id", "event_id", "status", "attempts", "error", "handled_at");
    return rows;
  }

  async function storedIds(tenantId: TenantId): Promise<string[]> {
    return (await storedRows(tenantId)).map((row) => row.event_id);
  }

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    tenantA = await insertTenant("inbox-a");
    tenantB = await insertTenant("inbox-b");
  });

  afterAll(async () => {
    await database.drop();
  });

  it("stores a transaction's events in order", async () => {
    const events = [event(), event(), event({ room_id: "!other:acme.test" })];
    const result = await acceptTransaction(database.knex, tenantA, "txn-order", events);

    expect(result.duplicate).toBe(false);
    expect(result.rejected).toBe(0);
    expect(result.accepted.map((accepted) => accepted.eventId)).toEqual(
      events.map((e) => e.event_id),
    );
    const seqs = result.accepted.map((accepted) => accepted.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(3);
    for (const [index, accepted] of result.accepted.entries()) {
      expect(accepted).toEqual({
        seq: accepted.seq,
        tenantId: tenantA,
        eventId: events[index]!.event_id,
        roomId: events[index]!.room_id,
        event: events[index],
        attempts: 0,
      });
    }

    const rows = await storedRows(tenantA);
    expect(rows.map((row) => row.event_id)).toEqual(events.map((e) => e.event_id));
    expect(rows.map((row) => row.seq)).toEqual(seqs);
    expect(rows.every((row) => row.status === "pending" && row.attempts === 0)).toBe(true);
  });

  it("the same transaction id again is a duplicate and stores nothing", async () => {
    const first = [event()];
    await acceptTransaction(database.knex, tenantA, "txn-retry", first);
    const before = await storedIds(tenantA);

    const retry = await acceptTransaction(database.knex, tenantA, "txn-retry", first);
    expect(retry).toEqual({ duplicate: true, accepted: [], rejected: 0 });
    expect(await storedIds(tenantA)).toEqual(before);
  });

  it("a transaction id reused with new events (Synapse on SQLite after a restart) stores the new ones", async () => {
    const first = [event()];
    await acceptTransaction(database.knex, tenantA, "txn-reused", first);
    const fresh = event();

    const reused = await acceptTransaction(database.knex, tenantA, "txn-reused", [...first, fresh]);
    expect(reused.duplicate).toBe(true);
    expect(reused.accepted.map((accepted) => accepted.eventId)).toEqual([fresh.event_id]);
    const ids = await storedIds(tenantA);
    expect(ids.filter((id) => id === first[0]!.event_id)).toHaveLength(1);
    expect(ids).toContain(fresh.event_id);
  });

  it("an event already stored is not stored again when it comes in a new transaction", async () => {
    const old = event();
    await acceptTransaction(database.knex, tenantA, "txn-first-delivery", [old]);
    const fresh = event();
    const result = await acceptTransaction(database.knex, tenantA, "txn-second-delivery", [
      old,
      fresh,
    ]);

    expect(result.duplicate).toBe(false);
    expect(result.accepted.map((accepted) => accepted.eventId)).toEqual([fresh.event_id]);
    const ids = await storedIds(tenantA);
    expect(ids.filter((id) => id === old.event_id)).toHaveLength(1);
    expect(ids).toContain(fresh.event_id);
  });

  it("the same event twice in one transaction is stored once", async () => {
    const twice = event();
    const result = await acceptTransaction(database.knex, tenantA, "txn-twice", [twice, twice]);
    expect(result.accepted.map((accepted) => accepted.eventId)).toEqual([twice.event_id]);
    expect((await storedIds(tenantA)).filter((id) => id === twice.event_id)).toHaveLength(1);
  });

  it("malformed entries are counted as rejected and not stored", async () => {
    const before = await storedIds(tenantA);
    const good = event();
    const longId = `$${"x".repeat(255)}`;
    const malformed: unknown[] = [
      null,
      42,
      "an event",
      ["$array"],
      { room_id: "!room:acme.test", type: "m.room.message", sender: "@alice:acme.test" },
      { ...event(), event_id: 7 },
      { ...event(), event_id: "" },
      { ...event(), event_id: longId },
      { ...event(), room_id: `!${"r".repeat(300)}:acme.test` },
      { ...event(), sender: undefined },
      { ...event(), type: null },
    ];
    const result = await acceptTransaction(database.knex, tenantA, "txn-malformed", [
      malformed[0],
      good,
      ...malformed.slice(1),
    ]);

    expect(result.duplicate).toBe(false);
    expect(result.rejected).toBe(malformed.length);
    expect(result.accepted.map((accepted) => accepted.eventId)).toEqual([good.event_id]);
    expect(await storedIds(tenantA)).toEqual([...before, good.event_id]);
  });

  it("a transaction of only malformed entries stores nothing but is remembered", async () => {
    const before = await storedIds(tenantA);
    const result = await acceptTransaction(database.knex, tenantA, "txn-all-bad", [null, {}, "x"]);
    expect(result).toEqual({ duplicate: false, accepted: [], rejected: 3 });
    expect(await storedIds(tenantA)).toEqual(before);
    expect(await acceptTransaction(database.knex, tenantA, "txn-all-bad", [null, {}, "x"])).toEqual(
      { duplicate: true, accepted: [], rejected: 3 },
    );
    expect(await storedIds(tenantA)).toEqual(before);
  });

  it("an event id of exactly 255 characters is accepted", async () => {
    const longest = event({ event_id: `$${"y".repeat(254)}` });
    const result = await acceptTransaction(database.knex, tenantA, "txn-255", [longest]);
    expect(result.rejected).toBe(0);
    expect(result.accepted.map((accepted) => accepted.eventId)).toEqual([longest.event_id]);
  });

  it("pendingEvents returns pending events in seq order with their content", async () => {
    const pending = await pendingEvents(database.knex, tenantA);
    const rows = await storedRows(tenantA);
    expect(pending.map((entry) => entry.seq)).toEqual(rows.map((row) => row.seq));
    expect(pending.map((entry) => entry.eventId)).toEqual(rows.map((row) => row.event_id));
    for (const entry of pending) {
      expect(entry.tenantId).toBe(tenantA);
      expect(entry.event.event_id).toBe(entry.eventId);
      expect(entry.event.room_id).toBe(entry.roomId);
      expect(entry.event.content).toMatchObject({ msgtype: "m.text" });
      expect(entry.attempts).toBe(0);
    }
  });

  it("markEvent records done and failed, and only pending events stay pending", async () => {
    const [first, second, third] = await pendingEvents(database.knex, tenantA);
    await markEvent(database.knex, tenantA, first!.seq, { status: "done" });
    await markEvent(database.knex, tenantA, second!.seq, {
      status: "failed",
      error: "model unavailable",
    });

    const pending = await pendingEvents(database.knex, tenantA);
    expect(pending.map((entry) => entry.seq)).not.toContain(first!.seq);
    expect(pending.map((entry) => entry.seq)).not.toContain(second!.seq);
    expect(pending[0]?.seq).toBe(third!.seq);

    const rows = await storedRows(tenantA);
    const done = rows.find((row) => row.seq === first!.seq);
    const failed = rows.find((row) => row.seq === second!.seq);
    expect(done).toMatchObject({ status: "done", attempts: 1, error: null });
    expect(done?.handled_at).not.toBeNull();
    expect(failed).toMatchObject({ status: "failed", attempts: 1, error: "model unavailable" });
    expect(failed?.handled_at).not.toBeNull();
  });

  it("markEvent back to pending counts the attempt and keeps it pending", async () => {
    const [entry] = await pendingEvents(database.knex, tenantA);
    await markEvent(database.knex, tenantA, entry!.seq, {
      status: "pending",
      error: "retry later",
    });
    const [again] = await pendingEvents(database.knex, tenantA);
    expect(again?.seq).toBe(entry!.seq);
    expect(again?.attempts).toBe(1);
    const row = (await storedRows(tenantA)).find((stored) => stored.seq === entry!.seq);
    expect(row).toMatchObject({ status: "pending", error: "retry later", handled_at: null });
  });

  it("tenant B cannot see or change tenant A's inbox", async () => {
    expect(await pendingEvents(database.knex, tenantB)).toEqual([]);
    const [ofA] = await pendingEvents(database.knex, tenantA);
    await markEvent(database.knex, tenantB, ofA!.seq, { status: "done" });
    const row = (await storedRows(tenantA)).find((stored) => stored.seq === ofA!.seq);
    expect(row?.status).toBe("pending");
  });

  it("transaction and event ids are per tenant", async () => {
    const shared = event();
    const forA = await acceptTransaction(database.knex, tenantA, "txn-shared", [shared]);
    const forB = await acceptTransaction(database.knex, tenantB, "txn-shared", [shared]);
    expect(forA.duplicate).toBe(false);
    expect(forB.duplicate).toBe(false);
    expect(forB.accepted.map((accepted) => accepted.eventId)).toEqual([shared.event_id]);
    expect(await storedIds(tenantB)).toEqual([shared.event_id]);
    const pendingOfB = await pendingEvents(database.knex, tenantB);
    expect(pendingOfB.map((entry) => entry.tenantId)).toEqual([tenantB]);
  });

  it("pruning deletes old handled events and transaction ids, never pending events or recent ones", async () => {
    const oldDone = event();
    const oldPending = event();
    const recentDone = event();
    await acceptTransaction(database.knex, tenantB, "txn-old", [oldDone, oldPending]);
    await acceptTransaction(database.knex, tenantB, "txn-recent", [recentDone]);
    await database
      .knex("inbound_events")
      .whereIn("event_id", [oldDone.event_id, recentDone.event_id])
      .update({ status: "done", handled_at: database.knex.fn.now() });
    await database
      .knex("inbound_events")
      .where({ event_id: oldDone.event_id })
      .update({ handled_at: database.knex.raw("now() - interval '8 days'") });
    await database
      .knex("appservice_transactions")
      .where({ txn_id: "txn-old" })
      .update({ received_at: database.knex.raw("now() - interval '8 days'") });

    const pruned = await pruneInbox(database.knex, tenantB, 7);
    expect(pruned).toEqual({ events: 1, transactions: 1 });
    const left = (await database
      .knex("inbound_events")
      .where({ tenant_id: tenantB })
      .pluck("event_id")) as string[];
    expect(left).toContain(oldPending.event_id);
    expect(left).toContain(recentDone.event_id);
    expect(left).not.toContain(oldDone.event_id);
    // Pruning one tenant leaves the other's inbox alone.
    expect((await pruneInbox(database.knex, tenantA, 7)).events).toBe(0);
  });
});
