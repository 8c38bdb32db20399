import type { Knex } from "knex";
import type { Plan } from "../config/plans.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { isAppError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { tenantDeletion } from "../tenants/deletion.ts";
import type { BillingNotices } from "./notices.ts";
import { subscriptionDirectory, subscriptionRepository } from "./repository.ts";
import {
  STRIPE_ACTOR,
  type BillingHolds,
  type PlanChanger,
  type SubscriptionSnapshot,
} from "./types.ts";

const MS_PER_DAY = 86_400_000;

/** Statuses in which the subscription's plan applies (past due and paused keep the paid plan). */
const LIVE = new Set(["trialing", "active", "past_due", "unpaid", "paused"]);
const PAST_DUE = new Set(["past_due", "unpaid"]);
const ENDED = new Set(["canceled", "incomplete_expired"]);

export interface SubscriptionSyncDeps {
  readonly db: Knex;
  readonly plans: Readonly<Record<string, Plan>>;
  readonly defaultPlan: string;
  readonly graceDays: number;
  readonly cancellationRetentionDays: number;
  readonly holds: BillingHolds;
  readonly planChanges: PlanChanger;
  readonly notices: BillingNotices;
  readonly log: Logger;
}

export type SyncOutcome =
  { readonly outcome: "done" } | { readonly outcome: "ignored"; readonly reason: string };

interface TenantFacts {
  id: TenantId;
  slug: string;
  name: string;
  plan: string;
  deleteAfter: Date | null;
}

/**
 * Makes a tenant obey its subscription as Stripe says it is now. Every
 * step is idempotent and driven by state, not by which event arrived: the
 * mirror and the billing hold change in one tenant transaction; the plan
 * change, the deletion and the owners' mail follow after commit, each
 * guarded by what the database already says (the tenant's plan,
 * delete_after, cancellation_handled_at, past_due_notified_at), so running
 * it again (a replayed or reordered event, a retry after a crash) does
 * nothing twice. Throws on failure; the caller retries the whole call.
 */
export class SubscriptionSync {
  readonly #deps: SubscriptionSyncDeps;
  readonly #log: Logger;

  constructor(deps: SubscriptionSyncDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "billing-sync" });
  }

  /** The plan a Stripe price stands for, if any plan has it. */
  planForPrice(priceId: string | null): string | undefined {
    if (priceId === null) return undefined;
    return Object.entries(this.#deps.plans).find(([, plan]) => plan.stripePriceId === priceId)?.[0];
  }

  graceEnd(pastDueSince: Date): Date {
    return new Date(pastDueSince.getTime() + this.#deps.graceDays * MS_PER_DAY);
  }

  async apply(
    tenantId: TenantId,
    snapshot: SubscriptionSnapshot,
    now: Date = new Date(),
  ): Promise<SyncOutcome> {
    const ended = ENDED.has(snapshot.status);
    const planId = this.planForPrice(snapshot.priceId);
    if (!ended && planId === undefined) {
      this.#log.warn(
        { tenantId, subscriptionId: snapshot.id, priceId: snapshot.priceId },
        "subscription on a price no plan has: ignored, the tenant's plan is unchanged",
      );
      return { outcome: "ignored", reason: `unknown price ${snapshot.priceId ?? "(none)"}` };
    }
    const { holds, db } = this.#deps;
    const staged = await withTenant(db, tenantId, async (trx) => {
      const before = await subscriptionRepository.lock(trx, tenantId);
      // An old subscription ending must not undo a newer one.
      if (before.subscriptionId !== null && before.subscriptionId !== snapshot.id && ended)
        return { ignored: `subscription ${snapshot.id} is not the tenant's current one` } as const;
      const pastDue = PAST_DUE.has(snapshot.status);
      const pastDueSince = pastDue ? (before.pastDueSince ?? now) : null;
      await subscriptionRepository.mirror(trx, tenantId, snapshot, {
        pastDueSince,
        pastDueNotifiedAt: pastDue ? before.pastDueNotifiedAt : null,
      });
      if (snapshot.status === "active" || snapshot.status === "trialing" || ended)
        await holds.lift(trx, tenantId, "billing", STRIPE_ACTOR);
      else if (snapshot.status === "paused")
        await holds.place(trx, tenantId, "billing", STRIPE_ACTOR);
      else if (pastDueSince !== null && this.graceEnd(pastDueSince) <= now)
        await holds.place(trx, tenantId, "billing", STRIPE_ACTOR);
      const tenant = await tenantFacts(trx, tenantId);
      return {
        before,
        tenant,
        pastDueSince,
        notified: pastDue && before.pastDueNotifiedAt !== null,
      };
    });
    if ("ignored" in staged) return { outcome: "ignored", reason: staged.ignored };
    const { before, tenant } = staged;

    const targetPlan = ended
      ? this.#deps.defaultPlan
      : LIVE.has(snapshot.status)
        ? planId
        : undefined;
    if (targetPlan !== undefined && tenant.plan !== targetPlan)
      await this.#deps.planChanges.apply(tenantId, targetPlan, STRIPE_ACTOR);

    if (ended && before.cancellationHandledAt === null) {
      if (tenant.deleteAfter === null)
        await ignoreConflict(() =>
          tenantDeletion.schedule(db, tenantId, this.#deps.cancellationRetentionDays, STRIPE_ACTOR),
        );
      await withTenant(db, tenantId, (trx) =>
        subscriptionRepository.setCancellationHandled(trx, true),
      );
      this.#log.info(
        { tenantId, subscriptionId: snapshot.id },
        "subscription ended: deletion scheduled",
      );
    } else if (LIVE.has(snapshot.status) && before.cancellationHandledAt !== null) {
      // Subscribed again within the retention period: the deletion our cancellation scheduled is called off.
      if (tenant.deleteAfter !== null)
        await ignoreConflict(() => tenantDeletion.cancel(db, tenantId, STRIPE_ACTOR));
      await withTenant(db, tenantId, (trx) =>
        subscriptionRepository.setCancellationHandled(trx, false),
      );
    }

    if (staged.pastDueSince !== null && !staged.notified)
      await this.#notifyPastDue(tenant, staged.pastDueSince);
    return { outcome: "done" };
  }

  /**
   * The dunning tick: suspends tenants past due for longer than the grace
   * period (billing hold) even when no webhook arrives. Reads only our
   * mirror (webhooks keep it current). Returns the tenants newly suspended.
   */
  async dunningTick(now: Date = new Date()): Promise<TenantId[]> {
    const cutoff = new Date(now.getTime() - this.#deps.graceDays * MS_PER_DAY);
    const suspended: TenantId[] = [];
    for (const tenantId of await subscriptionDirectory.pastDueBefore(this.#deps.db, cutoff)) {
      try {
        const placed = await withTenant(this.#deps.db, tenantId, async (trx) => {
          const row = await subscriptionRepository.lock(trx, tenantId);
          if (!PAST_DUE.has(row.status) || row.pastDueSince === null) return false;
          if (this.graceEnd(row.pastDueSince) > now) return false;
          return this.#deps.holds.place(trx, tenantId, "billing", STRIPE_ACTOR);
        });
        if (placed) {
          suspended.push(tenantId);
          this.#log.info({ tenantId }, "past due beyond the grace period: tenant suspended");
        }
      } catch (error) {
        this.#log.warn({ tenantId, err: error }, "dunning: could not suspend a past-due tenant");
      }
    }
    return suspended;
  }

  async #notifyPastDue(tenant: TenantFacts, pastDueSince: Date): Promise<void> {
    await this.#deps.notices.pastDue(tenant, this.graceEnd(pastDueSince));
    await withTenant(this.#deps.db, tenant.id, (trx) => subscriptionRepository.markNotified(trx));
  }
}

async function tenantFacts(trx: Knex.Transaction, tenantId: TenantId): Promise<TenantFacts> {
  const row = (await trx("tenants")
    .where({ id: tenantId })
    .first("id", "slug", "name", "plan", "delete_after")) as {
    id: string;
    slug: string;
    name: string;
    plan: string;
    delete_after: Date | string | null;
  };
  return {
    id: row.id as TenantId,
    slug: row.slug,
    name: row.name,
    plan: row.plan,
    deleteAfter: row.delete_after === null ? null : new Date(row.delete_after),
  };
}

/** Deletion scheduling refuses (409) what is already so; for us that is success. */
async function ignoreConflict(work: () => Promise<unknown>): Promise<void> {
  try {
    await work();
  } catch (error) {
    if (!(isAppError(error) && error.code === "conflict")) throw error;
  }
}
