import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { notFound } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { TenantStatus } from "./types.ts";

/**
 * Why a tenant is suspended. Each reason is independent: lifting one never
 * lifts another (a tenant that pays its overdue invoice stays suspended if
 * an operator also suspended it).
 * - `operator`: a platform operator suspended the tenant.
 * - `billing`: past due beyond the grace period, or the subscription is paused.
 * - `deletion`: the tenant is scheduled for deletion.
 */
export type HoldReason = "operator" | "billing" | "deletion";

export const HOLD_REASONS: readonly HoldReason[] = ["operator", "billing", "deletion"];

export interface TenantHold {
  readonly tenantId: TenantId;
  readonly reason: HoldReason;
  readonly since: Date;
}

interface HoldRow {
  tenant_id: string;
  reason: HoldReason;
  since: Date | string;
}

/**
 * Suspension holds (migration 011). `tenants.status` is derived from them and
 * recomputed in the caller's transaction on every change: `suspended` while
 * any hold exists, else `active` when the homeserver was provisioned
 * (`provisioned_at`), else `provisioning`. Nothing else may write
 * `tenants.status` to or from `suspended`.
 *
 * `trx` may be a tenant transaction (withTenant on that tenant) or a system
 * transaction; either way the tenant row is locked first, so concurrent
 * changes to one tenant's holds serialise and the status they leave is the
 * one their holds imply. A missing tenant is a not_found AppError.
 */
export const tenantHolds = {
  /**
   * Places a hold; true when it was not there before (then audited as
   * `tenant.hold` with the reason). Placing an existing hold changes nothing
   * (its `since` is kept) and returns false.
   */
  async place(
    trx: Knex.Transaction,
    tenantId: TenantId,
    reason: HoldReason,
    by: Actor,
  ): Promise<boolean> {
    const slug = await lockTenant(trx, tenantId);
    const inserted = (await trx("tenant_holds")
      .insert({ tenant_id: tenantId, reason })
      .onConflict(["tenant_id", "reason"])
      .ignore()
      .returning("reason")) as { reason: string }[];
    if (inserted.length === 0) return false;
    const status = await recomputeStatus(trx, tenantId);
    await auditLog.recordBy(trx, tenantId, by, "tenant.hold", slug, { reason, status });
    return true;
  },

  /**
   * Lifts a hold; true when it was there (then audited as `tenant.release`
   * with the reason and the status the tenant is left in). Lifting a hold
   * that is not there changes nothing and returns false.
   */
  async lift(
    trx: Knex.Transaction,
    tenantId: TenantId,
    reason: HoldReason,
    by: Actor,
  ): Promise<boolean> {
    const slug = await lockTenant(trx, tenantId);
    const deleted = (await trx("tenant_holds")
      .where({ tenant_id: tenantId, reason })
      .delete(["reason"])) as { reason: string }[];
    if (deleted.length === 0) return false;
    const status = await recomputeStatus(trx, tenantId);
    await auditLog.recordBy(trx, tenantId, by, "tenant.release", slug, { reason, status });
    return true;
  },

  /**
   * Holds visible to `trx`, oldest first: in a tenant transaction that
   * tenant's; in a system transaction every tenant's unless `tenantId` narrows it.
   */
  async list(trx: Knex.Transaction, tenantId?: TenantId): Promise<TenantHold[]> {
    const query = trx("tenant_holds").orderBy([{ column: "since" }, { column: "reason" }]);
    if (tenantId !== undefined) void query.where({ tenant_id: tenantId });
    const rows = (await query) as HoldRow[];
    return rows.map((row) => ({
      tenantId: row.tenant_id as TenantId,
      reason: row.reason,
      since: new Date(row.since),
    }));
  },

  /**
   * Records that the tenant's homeserver is provisioned (for the provisioner)
   * and recomputes the status: active unless a hold keeps it suspended.
   */
  async markProvisioned(trx: Knex.Transaction, tenantId: TenantId): Promise<TenantStatus> {
    await lockTenant(trx, tenantId);
    await trx("tenants")
      .where({ id: tenantId })
      .whereNull("provisioned_at")
      .update({ provisioned_at: trx.fn.now() });
    return recomputeStatus(trx, tenantId);
  },
};

async function lockTenant(trx: Knex.Transaction, tenantId: TenantId): Promise<string> {
  const row = (await trx("tenants").where({ id: tenantId }).forUpdate().first("slug")) as
    { slug: string } | undefined;
  if (row === undefined) throw notFound("tenant");
  return row.slug;
}

/** Writes the status the tenant's holds and provisioning imply, and returns it. */
async function recomputeStatus(trx: Knex.Transaction, tenantId: TenantId): Promise<TenantStatus> {
  const [row] = (await trx("tenants")
    .where({ id: tenantId })
    .update({
      status: trx.raw(
        `case when exists (select 1 from tenant_holds h where h.tenant_id = tenants.id) then 'suspended'
              when provisioned_at is not null then 'active'
              else 'provisioning' end`,
      ),
    })
    .returning("status")) as { status: TenantStatus }[];
  if (row === undefined) throw notFound("tenant");
  return row.status;
}
