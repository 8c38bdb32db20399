import type { Knex } from "knex";
import { withTenant } from "../db/tenant-transaction.ts";
import type { TenantId } from "../shared/ids.ts";

export interface UsageTotals {
  readonly messages: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

export interface UsageSummary {
  readonly today: UsageTotals;
  readonly month: UsageTotals;
}

/** Answered messages and tokens of a tenant, today and this month (UTC), from the usage meters. */
export async function usageSummary(db: Knex, tenantId: TenantId): Promise<UsageSummary> {
  return withTenant(db, tenantId, async (trx) => {
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
  });
}
