import type { Knex } from "knex";
import type { TenantId } from "../shared/ids.ts";
import type { SubscriptionSnapshot, VerifiedEvent } from "./types.ts";

/** A tenant's subscription as we mirror it (migration 010). */
export interface SubscriptionRecord {
  readonly tenantId: TenantId;
  readonly customerId: string | null;
  readonly subscriptionId: string | null;
  /** A SubscriptionStatus, or a status Stripe added after this code was written. */
  readonly status: string;
  readonly priceId: string | null;
  readonly currentPeriodEnd: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  readonly pastDueSince: Date | null;
  readonly pastDueNotifiedAt: Date | null;
  readonly cancellationHandledAt: Date | null;
  readonly updatedAt: Date;
}

interface SubscriptionRow {
  tenant_id: string;
  stripe_customer_id: string | null;
  stripe_subscription_id: string | null;
  status: string;
  price_id: string | null;
  current_period_end: Date | string | null;
  cancel_at_period_end: boolean;
  past_due_since: Date | string | null;
  past_due_notified_at: Date | string | null;
  cancellation_handled_at: Date | string | null;
  updated_at: Date | string;
}

const date = (value: Date | string | null): Date | null =>
  value === null ? null : new Date(value);

function toRecord(row: SubscriptionRow): SubscriptionRecord {
  return {
    tenantId: row.tenant_id as TenantId,
    customerId: row.stripe_customer_id,
    subscriptionId: row.stripe_subscription_id,
    status: row.status,
    priceId: row.price_id,
    currentPeriodEnd: date(row.current_period_end),
    cancelAtPeriodEnd: row.cancel_at_period_end,
    pastDueSince: date(row.past_due_since),
    pastDueNotifiedAt: date(row.past_due_notified_at),
    cancellationHandledAt: date(row.cancellation_handled_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** The subscriptions mirror; every call runs in the tenant's transaction (withTenant). */
export const subscriptionRepository = {
  async get(trx: Knex.Transaction): Promise<SubscriptionRecord | undefined> {
    const row = (await trx("subscriptions").first()) as SubscriptionRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  },

  /** The tenant's row, locked for the rest of the transaction (created empty if missing). */
  async lock(trx: Knex.Transaction, tenantId: TenantId): Promise<SubscriptionRecord> {
    await trx("subscriptions").insert({ tenant_id: tenantId }).onConflict("tenant_id").ignore();
    const row = (await trx("subscriptions").forUpdate().first()) as SubscriptionRow;
    return toRecord(row);
  },

  async setCustomer(trx: Knex.Transaction, tenantId: TenantId, customerId: string): Promise<void> {
    await trx("subscriptions")
      .insert({ tenant_id: tenantId, stripe_customer_id: customerId })
      .onConflict("tenant_id")
      .merge({ stripe_customer_id: customerId, updated_at: trx.fn.now() });
  },

  /** Writes what Stripe says, plus the dunning dates the caller decided. */
  async mirror(
    trx: Knex.Transaction,
    tenantId: TenantId,
    snapshot: SubscriptionSnapshot,
    dunning: { pastDueSince: Date | null; pastDueNotifiedAt: Date | null },
  ): Promise<void> {
    await trx("subscriptions").where({ tenant_id: tenantId }).update({
      stripe_customer_id: snapshot.customerId,
      stripe_subscription_id: snapshot.id,
      status: snapshot.status,
      price_id: snapshot.priceId,
      current_period_end: snapshot.currentPeriodEnd,
      cancel_at_period_end: snapshot.cancelAtPeriodEnd,
      past_due_since: dunning.pastDueSince,
      past_due_notified_at: dunning.pastDueNotifiedAt,
      updated_at: trx.fn.now(),
    });
  },

  async markNotified(trx: Knex.Transaction): Promise<void> {
    await trx("subscriptions")
      .whereNull("past_due_notified_at")
      .whereNotNull("past_due_since")
      .update({ past_due_notified_at: trx.fn.now() });
  },

  /** Records (or, on a new subscription, forgets) that a cancellation was carried out. */
  async setCancellationHandled(trx: Knex.Transaction, handled: boolean): Promise<void> {
    await trx("subscriptions").update({ cancellation_handled_at: handled ? trx.fn.now() : null });
  },
};

/**
 * Finding the tenant of a Stripe customer or subscription. Service-wide
 * lookups on the service connection (like routing), not tenant data reads.
 */
export const subscriptionDirectory = {
  async tenantOf(
    db: Knex,
    ids: { customerId?: string | null; subscriptionId?: string | null },
  ): Promise<TenantId | undefined> {
    for (const [column, value] of [
      ["stripe_subscription_id", ids.subscriptionId],
      ["stripe_customer_id", ids.customerId],
    ] as const) {
      if (value === null || value === undefined) continue;
      const row = (await db("subscriptions").where(column, value).first("tenant_id")) as
        { tenant_id: string } | undefined;
      if (row !== undefined) return row.tenant_id as TenantId;
    }
    return undefined;
  },

  /** Tenants past due since before `cutoff` (the dunning tick suspends them). */
  async pastDueBefore(db: Knex, cutoff: Date): Promise<TenantId[]> {
    const rows = (await db("subscriptions")
      .whereIn("status", ["past_due", "unpaid"])
      .where("past_due_since", "<=", cutoff)
      .select("tenant_id")) as { tenant_id: string }[];
    return rows.map((row) => row.tenant_id as TenantId);
  },

  /** Tenants with a Stripe customer (candidates for metering). */
  async withCustomer(db: Knex): Promise<{ tenantId: TenantId; customerId: string }[]> {
    const rows = (await db("subscriptions")
      .whereNotNull("stripe_customer_id")
      .select("tenant_id", "stripe_customer_id")) as {
      tenant_id: string;
      stripe_customer_id: string;
    }[];
    return rows.map((row) => ({
      tenantId: row.tenant_id as TenantId,
      customerId: row.stripe_customer_id,
    }));
  },
};

/** A webhook event waiting for (or done with) processing. */
export interface StoredEvent {
  readonly id: string;
  readonly type: string;
  readonly objectId: string | null;
  readonly subscriptionId: string | null;
  readonly attempts: number;
}

export type EventOutcome = "done" | "ignored" | "failed";

/**
 * stripe_events: each event id once, and its processing state. Service-wide
 * (ids and types, no payloads), on the service connection.
 */
export const stripeEvents = {
  /** Stores a new event as pending; false when the id was seen before (a duplicate delivery). */
  async insertOnce(
    db: Knex,
    event: VerifiedEvent,
    status: "pending" | "ignored",
  ): Promise<boolean> {
    const inserted = (await db("stripe_events")
      .insert({
        id: event.id,
        type: event.type,
        object_id: event.objectId,
        subscription_id: event.subscriptionId,
        status,
        ...(status === "ignored" ? { processed_at: db.fn.now() } : {}),
      })
      .onConflict("id")
      .ignore()
      .returning("id")) as { id: string }[];
    return inserted.length > 0;
  },

  /**
   * Claims the oldest due pending event for `leaseMs` (attempts + 1), or
   * undefined. A claim that is never finished runs out, so a crashed
   * process's event is taken up again.
   */
  async claimNext(db: Knex, leaseMs: number): Promise<StoredEvent | undefined> {
    const result = (await db.raw(
      `update stripe_events set attempts = attempts + 1,
              locked_until = now() + (? || ' milliseconds')::interval
        where id = (
          select id from stripe_events
           where status = 'pending' and next_attempt_at <= now()
             and (locked_until is null or locked_until < now())
           order by received_at, id
           limit 1
           for update skip locked)
        returning id, type, object_id, subscription_id, attempts`,
      [String(leaseMs)],
    )) as {
      rows: {
        id: string;
        type: string;
        object_id: string | null;
        subscription_id: string | null;
        attempts: number;
      }[];
    };
    const row = result.rows[0];
    if (row === undefined) return undefined;
    return {
      id: row.id,
      type: row.type,
      objectId: row.object_id,
      subscriptionId: row.subscription_id,
      attempts: row.attempts,
    };
  },

  async finish(db: Knex, id: string, outcome: EventOutcome, error: string | null): Promise<void> {
    await db("stripe_events")
      .where({ id })
      .update({ status: outcome, error, processed_at: db.fn.now(), locked_until: null });
  },

  /** Leaves the event pending, to be tried again after `delayMs`. */
  async retryLater(db: Knex, id: string, delayMs: number, error: string): Promise<void> {
    await db("stripe_events")
      .where({ id })
      .update({
        error,
        locked_until: null,
        next_attempt_at: db.raw("now() + (? || ' milliseconds')::interval", [String(delayMs)]),
      });
  },
};
