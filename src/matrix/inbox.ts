import type { Knex } from "knex";
import { withTenant } from "../db/tenant-transaction.ts";
import type { TenantId } from "../shared/ids.ts";

/** The envelope fields every room event has; the rest is validated when handled. */
export interface RawEvent {
  readonly event_id: string;
  readonly room_id: string;
  readonly type: string;
  readonly sender: string;
  readonly [field: string]: unknown;
}

export interface InboxEvent {
  readonly seq: number;
  readonly tenantId: TenantId;
  readonly eventId: string;
  readonly roomId: string;
  readonly event: RawEvent;
  readonly attempts: number;
}

export interface AcceptedTransaction {
  /** True when this transaction id was stored before (a retry, or an id the homeserver reused). */
  readonly duplicate: boolean;
  /** Events stored by this call, in transaction order (ones seen before are left out). */
  readonly accepted: InboxEvent[];
  /** Entries of the transaction that were not room events and were dropped. */
  readonly rejected: number;
}

const MAX_ID_CHARS = 255;

function isRawEvent(value: unknown): value is RawEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const event = value as Record<string, unknown>;
  return (["event_id", "room_id", "type", "sender"] as const).every(
    (field) =>
      typeof event[field] === "string" &&
      event[field].length > 0 &&
      event[field].length <= MAX_ID_CHARS,
  );
}

/**
 * Stores an appservice transaction and its events in one database
 * transaction, before the homeserver gets its 200. An event id seen before
 * (a retried transaction, or an event resent in a new one) is not stored
 * again: that is what makes a retry or a restart answer nothing twice.
 * The transaction id alone does not decide: Synapse on SQLite numbers its
 * transactions from the highest one it still keeps, so after a restart it
 * reuses ids it already sent, with new events in them.
 */
export async function acceptTransaction(
  db: Knex,
  tenantId: TenantId,
  txnId: string,
  events: readonly unknown[],
): Promise<AcceptedTransaction> {
  // Transactions with only ephemeral data (typing, receipts) have no room
  // events: nothing to store or deduplicate, so no database round trip.
  if (events.length === 0) return { duplicate: false, accepted: [], rejected: 0 };
  const valid = events.filter(isRawEvent);
  return withTenant(db, tenantId, async (trx) => {
    const inserted = (await trx("appservice_transactions")
      .insert({ tenant_id: tenantId, txn_id: txnId })
      .onConflict(["tenant_id", "txn_id"])
      .ignore()
      .returning("txn_id")) as unknown[];
    const duplicate = inserted.length === 0;
    const rejected = events.length - valid.length;
    if (valid.length === 0) return { duplicate, accepted: [], rejected };
    const rows = (await trx("inbound_events")
      .insert(
        valid.map((event) => ({
          tenant_id: tenantId,
          event_id: event.event_id,
          room_id: event.room_id,
          event: JSON.stringify(event),
        })),
      )
      .onConflict(["tenant_id", "event_id"])
      .ignore()
      .returning(["seq", "event_id"])) as { seq: number; event_id: string }[];
    const seqOf = new Map(rows.map((row) => [row.event_id, Number(row.seq)]));
    const accepted: InboxEvent[] = [];
    for (const event of valid) {
      const seq = seqOf.get(event.event_id);
      if (seq === undefined) continue;
      seqOf.delete(event.event_id);
      accepted.push({
        seq,
        tenantId,
        eventId: event.event_id,
        roomId: event.room_id,
        event,
        attempts: 0,
      });
    }
    accepted.sort((a, b) => a.seq - b.seq);
    return { duplicate, accepted, rejected };
  });
}

interface InboxRow {
  seq: number;
  event_id: string;
  room_id: string;
  event: RawEvent | string;
  attempts: number;
}

/** Events of a tenant not yet handled, oldest first (for recovery after a restart). */
export async function pendingEvents(db: Knex, tenantId: TenantId): Promise<InboxEvent[]> {
  const rows = (await withTenant(db, tenantId, (trx) =>
    trx("inbound_events")
      .where({ status: "pending" })
      .orderBy("seq")
      .select("seq", "event_id", "room_id", "event", "attempts"),
  )) as InboxRow[];
  return rows.map((row) => ({
    seq: Number(row.seq),
    tenantId,
    eventId: row.event_id,
    roomId: row.room_id,
    event: typeof row.event === "string" ? (JSON.parse(row.event) as RawEvent) : row.event,
    attempts: row.attempts,
  }));
}

/** Records the outcome of handling an event; `failed` events are not retried automatically. */
export async function markEvent(
  db: Knex,
  tenantId: TenantId,
  seq: number,
  outcome: { status: "done" | "failed" | "pending"; error?: string },
): Promise<void> {
  await withTenant(db, tenantId, (trx) =>
    trx("inbound_events")
      .where({ seq })
      .update({
        status: outcome.status,
        error: outcome.error ?? null,
        attempts: trx.raw("attempts + 1"),
        handled_at: outcome.status === "pending" ? null : trx.fn.now(),
      }),
  );
}

/**
 * Deletes handled events and transaction ids older than the retention
 * period. Homeservers retry a transaction for minutes, not days, so old ids
 * no longer protect anything; pending events are never deleted.
 * Returns how many rows went.
 */
export async function pruneInbox(
  db: Knex,
  tenantId: TenantId,
  retentionDays: number,
): Promise<{ events: number; transactions: number }> {
  return withTenant(db, tenantId, async (trx) => {
    const cutoff = trx.raw("now() - make_interval(days => ?)", [retentionDays]);
    const events = await trx("inbound_events")
      .whereIn("status", ["done", "failed"])
      .where("handled_at", "<", cutoff)
      .delete(["seq"]);
    const transactions = await trx("appservice_transactions")
      .where("received_at", "<", cutoff)
      .delete(["txn_id"]);
    return { events: events.length, transactions: transactions.length };
  });
}
