import type { Knex } from "knex";
import type { Plan } from "../config/plans.ts";
import { AppError, notFound } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";

/**
 * Plan refusals are 403 with code `limit_reached`: the request is valid and
 * the caller allowed to make it, but the tenant's plan does not include it.
 * Not 429 (retrying later does not help; an upgrade does), not 409 (nothing
 * about the resource's state is in conflict), not 402 (reserved, no agreed
 * meaning). Clients tell it from a permission 403 by the code, and
 * `details` names the plan, the limit and the current count.
 */
export const PLAN_LIMIT_HTTP_STATUS = 403;

/** The plan a tenant is on, resolved against config.plans. */
export interface TenantPlan {
  /** The plan id stored on the tenant. */
  readonly id: string;
  /** The limits that apply. */
  readonly plan: Plan;
  /**
   * False when the tenant's plan is no longer in config.plans: the default
   * plan's limits apply then, so a config mistake cannot make a tenant unlimited.
   */
  readonly known: boolean;
}

/** Today's (UTC) answered messages against the plan's daily limit. */
export interface MessageAllowance {
  /** True while `used` is below `limit` (always, when unlimited). */
  readonly allowed: boolean;
  readonly used: number;
  /** null: unlimited. */
  readonly limit: number | null;
  readonly plan: TenantPlan;
}

/** Refusal of something the plan does not include; the message names plan and limit. */
export function planLimitError(
  plan: TenantPlan,
  limit: string,
  message: string,
  details: Record<string, unknown> = {},
): AppError {
  return new AppError("limit_reached", message, {
    httpStatus: PLAN_LIMIT_HTTP_STATUS,
    details: { plan: plan.id, planName: plan.plan.name, limit, ...details },
  });
}

const plural = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? "" : "s"}`;

/**
 * What a tenant's plan allows: the one service every surface asks (agent
 * service for portal, API and chat commands; the turn loop; bridges). The
 * `assert…` methods throw a `limit_reached` AppError (see
 * PLAN_LIMIT_HTTP_STATUS) whose message names the plan and the limit, and
 * return nothing when allowed.
 *
 * Methods taking `trx` run inside the caller's transaction (withTenant on
 * that tenant, or a system transaction) so the check and the change it
 * guards commit together; those that count lock the tenant row first, so
 * two concurrent requests cannot both pass a check that only one of them may.
 */
export class Entitlements {
  readonly #db: Knex;
  readonly #plans: Readonly<Record<string, Plan>>;
  readonly #defaultPlan: string;

  constructor(db: Knex, plans: Readonly<Record<string, Plan>>, defaultPlan: string) {
    this.#db = db;
    this.#plans = plans;
    this.#defaultPlan = defaultPlan;
  }

  /** Resolves a plan id against config.plans (unknown ids get the default plan's limits). */
  resolve(planId: string): TenantPlan {
    const plan = Object.hasOwn(this.#plans, planId) ? this.#plans[planId] : undefined;
    if (plan !== undefined) return { id: planId, plan, known: true };
    return { id: planId, plan: this.#plans[this.#defaultPlan] as Plan, known: false };
  }

  /** Whether a plan id is in config.plans. */
  hasPlan(planId: string): boolean {
    return Object.hasOwn(this.#plans, planId);
  }

  /** The tenant's plan; outside any transaction (it reads the service-wide tenants table). */
  async planOf(tenantId: TenantId): Promise<TenantPlan> {
    const row = (await this.#db("tenants").where({ id: tenantId }).first("plan")) as
      { plan: string } | undefined;
    if (row === undefined) throw notFound("tenant");
    return this.resolve(row.plan);
  }

  /** The tenant's plan, read in `trx`; with `lock`, the tenant row stays locked until commit. */
  async planIn(trx: Knex.Transaction, tenantId: TenantId, lock = false): Promise<TenantPlan> {
    const query = trx("tenants").where({ id: tenantId }).first("plan");
    if (lock) void query.forUpdate();
    const row = (await query) as { plan: string } | undefined;
    if (row === undefined) throw notFound("tenant");
    return this.resolve(row.plan);
  }

  /** Refuses a new (active) agent when the tenant's active agents reach plan.agents. */
  async assertCanAddAgent(trx: Knex.Transaction, tenantId: TenantId): Promise<void> {
    await this.#assertActiveAgentsBelowLimit(
      trx,
      tenantId,
      (plan, limit) =>
        `the ${plan.name} plan allows ${plural(limit, "agent")}; upgrade to add more`,
    );
  }

  /**
   * Refuses making a paused agent active again when the tenant's active
   * agents already reach plan.agents (a downgrade pauses the extras; they do
   * not come back by being re-activated one by one). Call it only for an
   * agent that is paused now.
   */
  async assertCanActivateAgent(trx: Knex.Transaction, tenantId: TenantId): Promise<void> {
    await this.#assertActiveAgentsBelowLimit(
      trx,
      tenantId,
      (plan, limit) =>
        `the ${plan.name} plan allows ${plural(limit, "active agent")}; pause another agent or upgrade to activate this one`,
    );
  }

  /** One more active agent must stay within plan.agents (the tenant row locked for the count). */
  async #assertActiveAgentsBelowLimit(
    trx: Knex.Transaction,
    tenantId: TenantId,
    refusal: (plan: Plan, limit: number) => string,
  ): Promise<void> {
    const tenantPlan = await this.planIn(trx, tenantId, true);
    const limit = tenantPlan.plan.agents;
    if (limit === null) return;
    const active = await activeAgents(trx, tenantId);
    if (active >= limit)
      throw planLimitError(tenantPlan, "agents", refusal(tenantPlan.plan, limit), {
        allowed: limit,
        current: active,
      });
  }

  /** Refuses an agent on the operator's managed model key when the plan requires the tenant's own key. */
  assertManagedKeyAllowed(tenantPlan: TenantPlan): void {
    if (!tenantPlan.plan.requiresOwnKey) return;
    throw planLimitError(
      tenantPlan,
      "requiresOwnKey",
      `the ${tenantPlan.plan.name} plan requires your own model key; set the agent's key source to "own" and add a provider key`,
    );
  }

  /**
   * Why the operator's managed key may not pay for a turn now, or null when
   * it may: the plan requires the tenant's own key, or the plan's managed
   * tokens for this month (UTC) are used up and the plan does not bill
   * overage. The reason is said in the room, so it names the plan and the way out.
   */
  async managedKeyRefusal(
    trx: Knex.Transaction,
    tenantId: TenantId,
    tenantPlan: TenantPlan,
  ): Promise<string | null> {
    const { plan } = tenantPlan;
    if (plan.requiresOwnKey)
      return `The ${plan.name} plan needs your own model key: a tenant admin can store one (the portal's Keys page, or \`key set <provider> <key>\` here) and set the agent's key source to own.`;
    const limit = plan.managedTokensPerMonth;
    if (limit === null || plan.billsOverage) return null;
    const row = (await trx("usage_daily")
      .where({ tenant_id: tenantId })
      .where("day", ">=", trx.raw("date_trunc('month', now() at time zone 'utc')::date"))
      .first(trx.raw("coalesce(sum(managed_tokens), 0)::bigint as used"))) as {
      used: string | number;
    };
    if (Number(row.used) < limit) return null;
    return `This tenant has used the ${limit.toLocaleString("en")} managed-model tokens of the ${plan.name} plan for this month; agents on the managed key answer again next month (UTC), after an upgrade, or with your own key.`;
  }

  /**
   * Today's (UTC) answered messages against plan.messagesPerDay. A read, for
   * display and early checks; the turn loop counts through reserveMessage,
   * which cannot overshoot.
   */
  async messageAllowance(trx: Knex.Transaction, tenantId: TenantId): Promise<MessageAllowance> {
    const tenantPlan = await this.planIn(trx, tenantId);
    const row = (await trx("usage_daily")
      .where({ tenant_id: tenantId })
      .where("day", trx.raw("(now() at time zone 'utc')::date"))
      .first("messages")) as { messages: number } | undefined;
    const used = Number(row?.messages ?? 0);
    const limit = tenantPlan.plan.messagesPerDay;
    return { allowed: limit === null || used < limit, used, limit, plan: tenantPlan };
  }

  /**
   * Counts one message against today's (UTC) allowance if there is room,
   * atomically: the conditional upsert locks the tenant's usage row, so
   * concurrent turns queue on it and the count never passes the limit.
   * Returns the allowance as it stands after the attempt (`allowed` false:
   * nothing was counted). A turn that ends without an answer gives its
   * message back (turn-ledger.ts), so the count is of answered turns.
   */
  async reserveMessage(trx: Knex.Transaction, tenantId: TenantId): Promise<MessageAllowance> {
    const tenantPlan = await this.planIn(trx, tenantId);
    const limit = tenantPlan.plan.messagesPerDay;
    if (limit !== 0) {
      const result = (await trx.raw(
        `insert into usage_daily (tenant_id, day, messages)
         values (?, (now() at time zone 'utc')::date, 1)
         on conflict (tenant_id, day) do update set messages = usage_daily.messages + 1
           where ?::boolean or usage_daily.messages < ?
         returning messages`,
        [tenantId, limit === null, limit ?? 0],
      )) as { rows: { messages: number }[] };
      const [row] = result.rows;
      if (row !== undefined)
        return { allowed: true, used: Number(row.messages), limit, plan: tenantPlan };
    }
    const now = await this.messageAllowance(trx, tenantId);
    return { ...now, allowed: false };
  }

  /**
   * Refuses enabling one more bridge when `enabledBridges` (the tenant's
   * bridges enabled now, counted by the caller in `trx`, without the one
   * being enabled) reaches plan.bridges; a plan with 0 bridges refuses all.
   * The caller enables the bridge in the same transaction.
   */
  async assertCanEnableBridge(
    trx: Knex.Transaction,
    tenantId: TenantId,
    enabledBridges: number,
  ): Promise<void> {
    const tenantPlan = await this.planIn(trx, tenantId, true);
    const limit = tenantPlan.plan.bridges;
    if (limit === null || enabledBridges < limit) return;
    throw planLimitError(
      tenantPlan,
      "bridges",
      limit === 0
        ? `the ${tenantPlan.plan.name} plan does not include bridges; upgrade to connect Slack, Discord or Telegram`
        : `the ${tenantPlan.plan.name} plan allows ${plural(limit, "bridge")}; upgrade to add more`,
      { allowed: limit, current: enabledBridges },
    );
  }
}

async function activeAgents(trx: Knex.Transaction, tenantId: TenantId): Promise<number> {
  const row = (await trx("agents")
    .where({ tenant_id: tenantId, status: "active" })
    .count({ n: "*" })
    .first()) as { n: number | string };
  return Number(row.n);
}
