import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import type { Plan } from "../config/plans.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { conflict, notFound } from "../shared/errors.ts";
import { isUuid, type TenantId } from "../shared/ids.ts";
import { tenantHolds } from "./holds.ts";
import type { PlanChanges } from "./plan-changes.ts";
import type { TenantStatus } from "./types.ts";

/** A tenant as operators see it in the admin area. */
export interface TenantOverview {
  readonly id: TenantId;
  readonly slug: string;
  readonly name: string;
  readonly plan: string;
  readonly status: TenantStatus;
  readonly createdAt: Date;
  readonly deleteAfter: Date | null;
  /** When an operator (or sign-up) last asked the provisioner for a pass. */
  readonly provisionRequestedAt: Date;
  readonly members: number;
  readonly agents: number;
  readonly messagesToday: number;
  readonly homeserver: { readonly serverName: string; readonly clientUrl: string } | null;
}

interface TenantRow {
  id: string;
  slug: string;
  name: string;
  plan: string;
  status: TenantStatus;
  created_at: Date;
  delete_after: Date | null;
  provision_requested_at: Date;
}

/** A plan change: also the agents the downgrade paused (newest first). */
export interface PlanResult extends OperationResult {
  readonly pausedAgents: readonly string[];
}

/** Suspend/resume/re-provision/plan change: what happened, for the caller's message. */
export interface OperationResult {
  readonly tenant: TenantOverview;
  /** False when the tenant already had the asked plan (nothing written, nothing audited). */
  readonly changed: boolean;
}

/**
 * Platform operators' work on tenants: the list with each tenant's vital
 * signs, suspend and resume, asking the provisioner for a fresh pass, and
 * plan assignment (billing-off mode). Every change is written with its
 * audit entry in the tenant's own transaction, so the tenant sees who did it.
 * Callers check that the actor is an operator.
 */
export class TenantOperations {
  readonly #db: Knex;
  readonly #plans: Readonly<Record<string, Plan>>;
  readonly #planChanges: PlanChanges;

  constructor(db: Knex, plans: Readonly<Record<string, Plan>>, planChanges: PlanChanges) {
    this.#db = db;
    this.#plans = plans;
    this.#planChanges = planChanges;
  }

  /**
   * Tenants ordered by slug, after `afterSlug`, at most `limit`. The list
   * itself is service bookkeeping; each tenant's figures are read in its own
   * tenant transaction.
   */
  async list(options: {
    readonly limit: number;
    readonly afterSlug?: string | undefined;
  }): Promise<TenantOverview[]> {
    const query = this.#db("tenants").orderBy("slug").limit(options.limit).select("id");
    if (options.afterSlug !== undefined) void query.where("slug", ">", options.afterSlug);
    const ids = ((await query) as { id: string }[]).map((row) => row.id as TenantId);
    const overviews = [];
    for (const id of ids) {
      const overview = await this.#overview(id);
      if (overview !== undefined) overviews.push(overview);
    }
    return overviews;
  }

  /** One tenant's overview; 404 when there is no such tenant (or the id is not a UUID). */
  async get(tenantId: string): Promise<TenantOverview> {
    const overview = isUuid(tenantId) ? await this.#overview(tenantId as TenantId) : undefined;
    if (overview === undefined) throw notFound("tenant");
    return overview;
  }

  /**
   * Places the operator's hold: the tenant's agents stop (the runtime reads
   * the status on every message); data is kept. Other holds (billing,
   * deletion) are independent of this one.
   */
  async suspend(tenantId: string, by: Actor): Promise<OperationResult> {
    return this.#change(tenantId, async (trx, row) => {
      if (!(await tenantHolds.place(trx, row.id as TenantId, "operator", by)))
        throw conflict(`tenant "${row.slug}" is already suspended by an operator`);
      return true;
    });
  }

  /**
   * Lifts the operator's hold. The tenant stays suspended while another hold
   * remains (unpaid, scheduled for deletion); else it is active, or still
   * provisioning when its homeserver was never provisioned.
   */
  async resume(tenantId: string, by: Actor): Promise<OperationResult> {
    return this.#change(tenantId, async (trx, row) => {
      if (!(await tenantHolds.lift(trx, row.id as TenantId, "operator", by)))
        throw conflict(`tenant "${row.slug}" is not suspended by an operator`);
      return true;
    });
  }

  /** Asks the provisioner for a fresh pass over the tenant (it watches provision_requested_at). */
  async reprovision(tenantId: string, by: Actor): Promise<OperationResult> {
    return this.#change(tenantId, async (trx, row) => {
      await trx("tenants").where({ id: row.id }).update({ provision_requested_at: trx.fn.now() });
      await auditLog.recordBy(trx, row.id as TenantId, by, "tenant.reprovision", row.slug);
      return true;
    });
  }

  /**
   * Puts the tenant on a plan from config.plans (billing off: operators
   * assign plans), through PlanChanges: a downgrade pauses the newest extra
   * agents and mails the owners which.
   */
  async assignPlan(tenantId: string, planInput: unknown, by: Actor): Promise<PlanResult> {
    const change = await this.#planChanges.apply(tenantId, planInput, by);
    return {
      tenant: await this.get(tenantId),
      changed: change.changed,
      pausedAgents: change.pausedAgents,
    };
  }

  /** The plans an operator can choose from, in config order. */
  plans(): { id: string; name: string }[] {
    return Object.entries(this.#plans).map(([id, plan]) => ({ id, name: plan.name }));
  }

  async #change(
    tenantId: string,
    work: (trx: Knex.Transaction, row: TenantRow) => Promise<boolean>,
  ): Promise<OperationResult> {
    if (!isUuid(tenantId)) throw notFound("tenant");
    const id = tenantId as TenantId;
    const changed = await withTenant(this.#db, id, async (trx) => {
      // Row lock: two operators acting at once see each other's change.
      const row = (await trx("tenants").where({ id }).forUpdate().first()) as TenantRow | undefined;
      if (row === undefined) throw notFound("tenant");
      return work(trx, row);
    });
    return { tenant: await this.get(id), changed };
  }

  async #overview(id: TenantId): Promise<TenantOverview | undefined> {
    return withTenant(this.#db, id, async (trx) => {
      const row = (await trx("tenants").where({ id }).first()) as TenantRow | undefined;
      if (row === undefined) return undefined;
      const count = async (table: string): Promise<number> =>
        Number(((await trx(table).count({ n: "*" }).first()) as { n: number | string }).n);
      const today = (await trx("usage_daily")
        .where("day", trx.raw("(now() at time zone 'utc')::date"))
        .first("messages")) as { messages: number } | undefined;
      const homeserver = (await trx("homeservers").first("server_name", "client_url")) as
        { server_name: string; client_url: string } | undefined;
      return {
        id,
        slug: row.slug,
        name: row.name,
        plan: row.plan,
        status: row.status,
        createdAt: new Date(row.created_at),
        deleteAfter: row.delete_after === null ? null : new Date(row.delete_after),
        provisionRequestedAt: new Date(row.provision_requested_at),
        members: await count("memberships"),
        agents: await count("agents"),
        messagesToday: Number(today?.messages ?? 0),
        homeserver:
          homeserver === undefined
            ? null
            : { serverName: homeserver.server_name, clientUrl: homeserver.client_url },
      };
    });
  }
}
