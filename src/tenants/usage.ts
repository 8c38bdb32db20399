import type { Knex } from "knex";
import type { Plan } from "../config/plans.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { badRequest } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Tenant } from "./types.ts";

export interface UsageTotals {
  readonly messages: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

export interface UsageSummary {
  readonly today: UsageTotals;
  readonly month: UsageTotals;
}

/** One UTC day of usage; days without a meter row are zeros. */
export interface DailyUsage extends UsageTotals {
  /** YYYY-MM-DD (UTC). */
  readonly day: string;
}

/** A plan's limits as the tenant sees them; null means unlimited. */
export interface PlanLimits {
  readonly planId: string;
  readonly planName: string;
  /** False when the tenant's plan is no longer in config.plans (its limits are then unknown). */
  readonly known: boolean;
  readonly messagesPerDay: number | null;
  readonly managedTokensPerMonth: number | null;
  readonly agents: number | null;
}

/** Everything the usage page and API show: the daily series, today and this month against the plan. */
export interface UsageReport extends UsageSummary {
  readonly days: readonly DailyUsage[];
  readonly limits: PlanLimits;
  readonly agentCount: number;
}

export const USAGE_DAYS_DEFAULT = 30;
export const USAGE_DAYS_MAX = 90;

export function planLimits(plans: Readonly<Record<string, Plan>>, planId: string): PlanLimits {
  const plan = Object.hasOwn(plans, planId) ? plans[planId] : undefined;
  if (plan === undefined)
    return {
      planId,
      planName: planId,
      known: false,
      messagesPerDay: null,
      managedTokensPerMonth: null,
      agents: null,
    };
  return {
    planId,
    planName: plan.name,
    known: true,
    messagesPerDay: plan.messagesPerDay,
    managedTokensPerMonth: plan.managedTokensPerMonth,
    agents: plan.agents,
  };
}

async function summaryIn(trx: Knex.Transaction): Promise<UsageSummary> {
  const row = (await trx("usage_daily")
    .select(
      trx.raw(
        "coalesce(sum(messages) filter (where day = (now() at time zone 'utc')::date), 0)::int as today_messages",
      ),
      trx.raw(
        "coalesce(sum(input_tokens) filter (where day = (now() at time zone 'utc')::date), 0)::bigint as today_input",
      ),
      trx.raw(
        "coalesce(sum(output_tokens) filter (where day = (now() at time zone 'utc')::date), 0)::bigint as today_output",
      ),
      trx.raw("coalesce(sum(messages), 0)::int as month_messages"),
      trx.raw("coalesce(sum(input_tokens), 0)::bigint as month_input"),
      trx.raw("coalesce(sum(output_tokens), 0)::bigint as month_output"),
    )
    .where("day", ">=", trx.raw("date_trunc('month', now() at time zone 'utc')::date"))
    .first()) as Record<string, number | string>;
  const n = (key: string): number => Number(row[key] ?? 0);
  return {
    today: {
      messages: n("today_messages"),
      inputTokens: n("today_input"),
      outputTokens: n("today_output"),
    },
    month: {
      messages: n("month_messages"),
      inputTokens: n("month_input"),
      outputTokens: n("month_output"),
    },
  };
}

/** The last `days` UTC days up to today, oldest first, zero-filled (row-level security scopes it). */
async function dailyIn(trx: Knex.Transaction, days: number): Promise<DailyUsage[]> {
  const result = (await trx.raw(
    `select to_char(d.day, 'YYYY-MM-DD') as day,
            coalesce(u.messages, 0)::int as messages,
            coalesce(u.input_tokens, 0)::bigint as input_tokens,
            coalesce(u.output_tokens, 0)::bigint as output_tokens
       from (select generate_series(
               (now() at time zone 'utc')::date - (?::int - 1),
               (now() at time zone 'utc')::date,
               interval '1 day')::date as day) d
       left join usage_daily u on u.day = d.day
      order by d.day`,
    [days],
  )) as { rows: Record<string, string | number>[] };
  return result.rows.map((row) => ({
    day: String(row.day),
    messages: Number(row.messages),
    inputTokens: Number(row.input_tokens),
    outputTokens: Number(row.output_tokens),
  }));
}

/** Answered messages and tokens of a tenant, today and this month (UTC), from the usage meters. */
export async function usageSummary(db: Knex, tenantId: TenantId): Promise<UsageSummary> {
  return withTenant(db, tenantId, summaryIn);
}

/**
 * The usage report of a tenant over the last `days` days (1..USAGE_DAYS_MAX),
 * with its plan's limits. Limits are shown, not enforced here.
 */
export async function usageReport(
  db: Knex,
  tenant: Tenant,
  plans: Readonly<Record<string, Plan>>,
  days: number = USAGE_DAYS_DEFAULT,
): Promise<UsageReport> {
  if (!Number.isInteger(days) || days < 1 || days > USAGE_DAYS_MAX)
    throw badRequest(`days: must be a whole number from 1 to ${String(USAGE_DAYS_MAX)}`);
  const { summary, series, agentCount } = await withTenant(db, tenant.id, async (trx) => {
    const counted = (await trx("agents").count({ n: "*" }).first()) as { n: number | string };
    return {
      summary: await summaryIn(trx),
      series: await dailyIn(trx, days),
      agentCount: Number(counted.n),
    };
  });
  return { ...summary, days: series, limits: planLimits(plans, tenant.plan), agentCount };
}
