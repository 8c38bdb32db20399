import type { Knex } from "knex";
import type { Plan } from "../config/plans.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { describeError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { subscriptionDirectory } from "./repository.ts";
import type { StripeGateway } from "./types.ts";

/** Days looked back for unreported usage (Stripe accepts meter events up to 35 days old). */
const METER_LOOKBACK_DAYS = 7;

interface MeterRow {
  day: string;
  tokens_reported: string | number;
  increments: number;
  pending_tokens: string | number | null;
}

/**
 * Managed-key tokens per tenant and UTC day, reported to the Stripe Billing
 * Meter for plans with billsOverage. Each report is an increment with the
 * identifier `<tenant>:<day>:<n>`; its size is written to meter_reports
 * (pending_tokens) before it is sent, so a retry after a failure or crash
 * resends the same identifier with the same value, and Stripe counts it
 * once. Only after Stripe accepted it does tokens_reported grow.
 *
 * Managed tokens are the tokens of answered turns that the operator's key
 * paid for (turns.key_source, recorded when the turn finished).
 */
export class Metering {
  readonly #db: Knex;
  readonly #gateway: StripeGateway;
  readonly #plans: Readonly<Record<string, Plan>>;
  readonly #eventName: string;
  readonly #log: Logger;

  constructor(deps: {
    db: Knex;
    gateway: StripeGateway;
    plans: Readonly<Record<string, Plan>>;
    eventName: string;
    log: Logger;
  }) {
    this.#db = deps.db;
    this.#gateway = deps.gateway;
    this.#plans = deps.plans;
    this.#eventName = deps.eventName;
    this.#log = deps.log.child({ module: "billing-metering" });
  }

  /** Reports every tenant's unreported usage; returns the tokens sent. Never throws. */
  async reportAll(): Promise<number> {
    let sent = 0;
    let candidates: { tenantId: TenantId; customerId: string }[] = [];
    try {
      candidates = await subscriptionDirectory.withCustomer(this.#db);
    } catch (error) {
      this.#log.warn({ err: describeError(error) }, "metering: could not list customers");
      return 0;
    }
    for (const { tenantId, customerId } of candidates) {
      try {
        sent += await this.reportTenant(tenantId, customerId);
      } catch (error) {
        // Left pending in meter_reports; the next run sends the same increment again.
        this.#log.warn({ tenantId, err: describeError(error) }, "metering: report failed");
      }
    }
    return sent;
  }

  /** Reports one tenant's unreported managed tokens, day by day. */
  async reportTenant(tenantId: TenantId, customerId: string): Promise<number> {
    let sent = 0;
    const days = await withTenant(this.#db, tenantId, async (trx) => {
      const tenant = (await trx("tenants").where({ id: tenantId }).first("plan")) as
        { plan: string } | undefined;
      const plan = tenant === undefined ? undefined : this.#plans[tenant.plan];
      if (plan?.billsOverage !== true) return [];
      return managedTokensByDay(trx, METER_LOOKBACK_DAYS);
    });
    for (const { day, tokens } of days) {
      const increment = await withTenant(this.#db, tenantId, (trx) =>
        stageIncrement(trx, tenantId, day, tokens),
      );
      if (increment === undefined) continue;
      const outcome = await this.#gateway.reportMeterEvent({
        eventName: this.#eventName,
        customerId,
        value: increment.tokens,
        identifier: `${tenantId}:${day}:${String(increment.number)}`,
        timestamp: timestampOf(day),
      });
      await withTenant(this.#db, tenantId, (trx) =>
        trx("meter_reports")
          .where({ tenant_id: tenantId, day, increments: increment.number - 1 })
          .update({
            tokens_reported: trx.raw("tokens_reported + pending_tokens"),
            increments: increment.number,
            pending_tokens: null,
            updated_at: trx.fn.now(),
          }),
      );
      if (outcome === "duplicate")
        this.#log.info({ tenantId, day }, "metering: Stripe already had this increment");
      sent += increment.tokens;
    }
    return sent;
  }
}

/**
 * The increment to send for a day: the pending one if an earlier run did
 * not finish, else a new one for the tokens not yet reported (none if zero).
 */
async function stageIncrement(
  trx: Knex.Transaction,
  tenantId: TenantId,
  day: string,
  tokens: number,
): Promise<{ number: number; tokens: number } | undefined> {
  await trx("meter_reports")
    .insert({ tenant_id: tenantId, day })
    .onConflict(["tenant_id", "day"])
    .ignore();
  const row = (await trx("meter_reports")
    .where({ tenant_id: tenantId, day })
    .forUpdate()
    .first("day", "tokens_reported", "increments", "pending_tokens")) as MeterRow;
  if (row.pending_tokens !== null)
    return { number: row.increments + 1, tokens: Number(row.pending_tokens) };
  const unreported = tokens - Number(row.tokens_reported);
  if (unreported <= 0) return undefined;
  await trx("meter_reports")
    .where({ tenant_id: tenantId, day })
    .update({ pending_tokens: unreported, updated_at: trx.fn.now() });
  return { number: row.increments + 1, tokens: unreported };
}

/** Managed-key tokens of answered turns per UTC day over the last `days` days. */
async function managedTokensByDay(
  trx: Knex.Transaction,
  days: number,
): Promise<{ day: string; tokens: number }[]> {
  const rows = (await trx("turns")
    .where("turns.status", "answered")
    .where("turns.key_source", "managed")
    .whereRaw("turns.finished_at >= now() - (? || ' days')::interval", [String(days)])
    .groupByRaw("1")
    .orderByRaw("1")
    .select(
      trx.raw("to_char((turns.finished_at at time zone 'utc')::date, 'YYYY-MM-DD') as day"),
      trx.raw("sum(turns.input_tokens + turns.output_tokens)::bigint as tokens"),
    )) as { day: string; tokens: string | number }[];
  return rows.map((row) => ({ day: row.day, tokens: Number(row.tokens) }));
}

/**
 * The start of the UTC day: inside the day, never in the future, and the
 * same on every attempt (a retried request must carry the same parameters
 * as the first, or Stripe refuses its idempotency key).
 */
function timestampOf(day: string): Date {
  return new Date(`${day}T00:00:00Z`);
}
