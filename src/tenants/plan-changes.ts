import type { Knex } from "knex";
import { z } from "zod";
import type { Mailer } from "../accounts/mailer.ts";
import { accountRepository } from "../accounts/repository.ts";
import type { AccountId } from "../accounts/types.ts";
import { parseOrThrow } from "../agents/validation.ts";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import type { Plan } from "../config/plans.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { badRequest, describeError, notFound } from "../shared/errors.ts";
import { isUuid, type TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";

export interface PlanChangeResult {
  /** Names of the agents this change paused (newest first); empty on an upgrade. */
  readonly pausedAgents: string[];
  /** False when the tenant was on that plan already (nothing written, nothing audited). */
  readonly changed: boolean;
  readonly from: string;
  readonly to: string;
}

export interface PlanChangesDeps {
  readonly db: Knex;
  readonly plans: Readonly<Record<string, Plan>>;
  readonly mailer: Mailer;
  /** The portal's base URL, for the link in the mail. */
  readonly publicUrl: string;
  readonly log: Logger;
}

const PlanIdSchema = z.string().trim().min(1).max(32);

/**
 * Moving a tenant to another plan: the one path for operators (CLI, admin
 * area, billing off) and for billing (a Stripe subscription changed).
 *
 * A downgrade below the tenant's active agents pauses the newest extra
 * agents (status "paused": never deleted, their memory kept; re-activating
 * one is then refused while over the limit, see Entitlements). The plan,
 * the pauses and their audit entries commit together; the tenant's owners
 * are mailed which agents were paused after commit (a mail failure is
 * logged, the change stands).
 */
export class PlanChanges {
  readonly #deps: PlanChangesDeps;
  readonly #log: Logger;

  constructor(deps: PlanChangesDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "plan-changes" });
  }

  /**
   * Puts the tenant on `planInput` (a config.plans id; anything else is a
   * 400 naming the plans). An unknown tenant id is a 404.
   */
  async apply(tenantId: string, planInput: unknown, by: Actor): Promise<PlanChangeResult> {
    const planId = parseOrThrow(PlanIdSchema, planInput);
    const plan = Object.hasOwn(this.#deps.plans, planId) ? this.#deps.plans[planId] : undefined;
    if (plan === undefined)
      throw badRequest(`plan: must be one of ${Object.keys(this.#deps.plans).join(", ")}`, {
        field: "plan",
      });
    if (!isUuid(tenantId)) throw notFound("tenant");
    const id = tenantId as TenantId;
    const outcome = await withTenant(this.#deps.db, id, async (trx) => {
      // Locked: agent creation locks it too (Entitlements), so no agent
      // slips in between counting and pausing.
      const row = (await trx("tenants").where({ id }).forUpdate().first("slug", "name", "plan")) as
        { slug: string; name: string; plan: string } | undefined;
      if (row === undefined) throw notFound("tenant");
      if (row.plan === planId)
        return { row, result: { pausedAgents: [], changed: false, from: row.plan, to: planId } };
      // The provisioner's cheap pass skips healthy tenants; the request makes it
      // apply the new plan's homeserver resources now (in place, data kept).
      await trx("tenants")
        .where({ id })
        .update({ plan: planId, provision_requested_at: trx.fn.now() });
      const pausedAgents = await pauseExtraAgents(trx, id, plan, by);
      await auditLog.recordBy(trx, id, by, "tenant.plan", row.slug, {
        from: row.plan,
        to: planId,
        ...(pausedAgents.length > 0 ? { pausedAgents } : {}),
      });
      const owners = pausedAgents.length > 0 ? await ownerAccountIds(trx) : [];
      return { row, owners, result: { pausedAgents, changed: true, from: row.plan, to: planId } };
    });
    if ("owners" in outcome && outcome.owners.length > 0)
      await this.#tellOwners(outcome.owners, outcome.row, plan, outcome.result.pausedAgents);
    return outcome.result;
  }

  async #tellOwners(
    ownerIds: readonly AccountId[],
    tenant: { slug: string; name: string },
    plan: Plan,
    pausedAgents: readonly string[],
  ): Promise<void> {
    const owners = await accountRepository.findByIds(this.#deps.db, ownerIds);
    const base = this.#deps.publicUrl.replace(/\/+$/, "");
    const limit = plan.agents ?? 0;
    const text =
      `"${tenant.name}" is now on the ${plan.name} plan, which allows ${String(limit)} active agent${limit === 1 ? "" : "s"}.\n\n` +
      `These agents were paused (not deleted; their settings and memory are kept):\n` +
      pausedAgents.map((name) => `  - ${name}\n`).join("") +
      `\nUpgrade, or pause another agent, to activate them again:\n${base}/t/${tenant.slug}/agents\n`;
    for (const owner of owners) {
      try {
        await this.#deps.mailer.send({
          to: owner.email,
          subject: `${tenant.name}: ${String(pausedAgents.length)} agent${pausedAgents.length === 1 ? "" : "s"} paused by the plan change`,
          text,
        });
      } catch (error) {
        this.#log.warn(
          { tenant: tenant.slug, accountId: owner.id, err: describeError(error) },
          "could not mail an owner about paused agents",
        );
      }
    }
  }
}

/** Pauses the newest active agents beyond plan.agents; returns their names, newest first. */
async function pauseExtraAgents(
  trx: Knex.Transaction,
  tenantId: TenantId,
  plan: Plan,
  by: Actor,
): Promise<string[]> {
  if (plan.agents === null) return [];
  const active = (await trx("agents")
    .where({ tenant_id: tenantId, status: "active" })
    // Newest first; the id breaks ties between agents made in one transaction.
    .orderBy([
      { column: "created_at", order: "desc" },
      { column: "id", order: "desc" },
    ])
    .select("id", "name")) as { id: string; name: string }[];
  const extras = active.slice(0, Math.max(0, active.length - plan.agents));
  if (extras.length === 0) return [];
  await trx("agents")
    .whereIn(
      "id",
      extras.map((agent) => agent.id),
    )
    .update({ status: "paused", updated_at: trx.fn.now() });
  for (const agent of extras)
    await auditLog.recordBy(trx, tenantId, by, "agent.pause", agent.name, {
      reason: "plan",
      plan: plan.name,
    });
  return extras.map((agent) => agent.name);
}

async function ownerAccountIds(trx: Knex.Transaction): Promise<AccountId[]> {
  return (await trx("memberships").where({ role: "owner" }).pluck("account_id")) as AccountId[];
}
