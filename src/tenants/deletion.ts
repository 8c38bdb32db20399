import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withSystemTransaction } from "../db/tenant-transaction.ts";
import { conflict, notFound } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import { tenantHolds } from "./holds.ts";
import type { TenantStatus } from "./types.ts";

const MS_PER_DAY = 86_400_000;

/** A tenant whose deletion is scheduled. */
export interface ScheduledDeletion {
  readonly tenantId: TenantId;
  /** After this time the tenant and all its data are erased. */
  readonly deleteAfter: Date;
}

/** A tenant erased by purgeDue, and the homeserver someone must still tear down. */
export interface PurgedTenant {
  readonly slug: string;
  readonly serverName: string | null;
}

interface DeletionRow {
  id: string;
  slug: string;
  delete_after: Date | string | null;
}

/**
 * Deleting a tenant, in two steps. `schedule` places the `deletion` hold
 * (holds.ts), which suspends the tenant at once (the runtime reads the status
 * on every message, so its agents stop answering immediately) and sets
 * delete_after = now + the retention period; within that period `cancel`
 * lifts that hold, and only that one: a tenant an operator suspended, or
 * one whose payment is overdue, stays suspended. `purgeDue` then deletes the
 * tenant row, and every table of tenant data goes with it by its foreign
 * key (`on delete cascade`).
 *
 * These run on the service connection: the tenants table is service-wide
 * bookkeeping, not tenant data. Each change is audited in the same
 * transaction (the audit entries of a purged tenant go with it).
 */
export const tenantDeletion = {
  async schedule(
    db: Knex,
    tenantId: TenantId,
    retentionDays: number,
    by: Actor,
  ): Promise<ScheduledDeletion> {
    return withSystemTransaction(db, async (trx) => {
      const row = await lockTenant(trx, tenantId);
      if (row.delete_after !== null)
        throw conflict(
          `this tenant is already scheduled for deletion on ${new Date(row.delete_after).toISOString()}`,
        );
      const deleteAfter = new Date(Date.now() + retentionDays * MS_PER_DAY);
      await trx("tenants").where({ id: tenantId }).update({ delete_after: deleteAfter });
      await auditLog.recordBy(trx, tenantId, by, "tenant.delete", row.slug, {
        deleteAfter: deleteAfter.toISOString(),
        retentionDays,
      });
      await tenantHolds.place(trx, tenantId, "deletion", by);
      return { tenantId, deleteAfter };
    });
  },

  /**
   * Restores a tenant scheduled for deletion (before it is purged): lifts the
   * deletion hold and returns the status the remaining holds leave it in.
   */
  async cancel(db: Knex, tenantId: TenantId, by: Actor): Promise<TenantStatus> {
    return withSystemTransaction(db, async (trx) => {
      const row = await lockTenant(trx, tenantId);
      if (row.delete_after === null) throw conflict("this tenant is not scheduled for deletion");
      await trx("tenants").where({ id: tenantId }).update({ delete_after: null });
      await tenantHolds.lift(trx, tenantId, "deletion", by);
      const { status } = (await trx("tenants").where({ id: tenantId }).first("status")) as {
        status: TenantStatus;
      };
      await auditLog.recordBy(trx, tenantId, by, "tenant.restore", row.slug, { status });
      return status;
    });
  },

  /**
   * Erases every tenant whose retention period ended before `now`; returns
   * their slugs. Idempotent and safe to run from several processes (each
   * row is deleted once; a concurrent run finds nothing left).
   *
   * The tenant's homeserver (its Synapse, its database, its media) is not
   * touched here: tearing it down is the provisioner's job, which does not
   * exist yet. Until it does, an operator removes a purged tenant's
   * homeserver by hand; the result names it for the log.
   */
  async purgeDue(db: Knex, now: Date = new Date()): Promise<PurgedTenant[]> {
    return withSystemTransaction(db, async (trx) => {
      const due = (await trx("tenants")
        .leftJoin("homeservers", "homeservers.tenant_id", "tenants.id")
        .whereNotNull("tenants.delete_after")
        .where("tenants.delete_after", "<=", now)
        // Only the tenant rows: the homeserver side of an outer join cannot be locked.
        .forUpdate("tenants")
        .select("tenants.id", "tenants.slug", "homeservers.server_name")) as {
        id: string;
        slug: string;
        server_name: string | null;
      }[];
      if (due.length === 0) return [];
      // Counted through RETURNING: knex-pglite answers a plain delete with the raw result.
      const deleted = (await trx("tenants")
        .whereIn(
          "id",
          due.map((row) => row.id),
        )
        .delete(["id"])) as { id: string }[];
      const gone = new Set(deleted.map((row) => row.id));
      return due
        .filter((row) => gone.has(row.id))
        .map((row) => ({ slug: row.slug, serverName: row.server_name }));
    });
  },
};

async function lockTenant(trx: Knex.Transaction, tenantId: TenantId): Promise<DeletionRow> {
  const row = (await trx("tenants")
    .where({ id: tenantId })
    .forUpdate()
    .first("id", "slug", "delete_after")) as DeletionRow | undefined;
  if (row === undefined) throw notFound("tenant");
  return row;
}
