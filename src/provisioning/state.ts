import type { Knex } from "knex";
import type { TenantId } from "../shared/ids.ts";
import type { HomeserverState } from "./driver.ts";

/** What the reconciler aims a tenant's homeserver at. */
export type DesiredState = "running" | "stopped" | "deleted";

/** A tenant the reconciler looks at, with everything its decision needs (no secrets). */
export interface TenantToReconcile {
  readonly tenantId: TenantId;
  readonly slug: string;
  readonly plan: string;
  readonly deleteAfter: Date | null;
  readonly provisionedAt: Date | null;
  readonly provisionRequestedAt: Date | null;
  readonly holds: number;
  /** null: no provisioning row yet (the first pass creates it). */
  readonly provisioning: ProvisioningRecord | null;
}

export interface ProvisioningRecord {
  readonly driver: string;
  readonly registrationSharedSecretEncrypted: string;
  readonly observedState: HomeserverState | null;
  readonly failures: number;
  readonly nextAttemptAt: Date | null;
  readonly lastError: string | null;
  readonly reconciledAt: Date | null;
  readonly adminUserId: string | null;
  readonly adminPasswordEncrypted: string | null;
  readonly managementRoomId: string | null;
  readonly bootstrappedAt: Date | null;
}

interface Row {
  id: string;
  slug: string;
  plan: string;
  delete_after: Date | string | null;
  provisioned_at: Date | string | null;
  provision_requested_at: Date | string | null;
  holds: number | string;
  driver: string | null;
  registration_shared_secret_encrypted: string | null;
  observed_state: HomeserverState | null;
  failures: number | null;
  next_attempt_at: Date | string | null;
  last_error: string | null;
  reconciled_at: Date | string | null;
  admin_user_id: string | null;
  admin_password_encrypted: string | null;
  management_room_id: string | null;
  bootstrapped_at: Date | string | null;
}

const date = (value: Date | string | null): Date | null =>
  value === null ? null : new Date(value);

/** last_error is shown to operators; long Synapse log tails are cut. */
const MAX_ERROR_CHARS = 2_000;

/**
 * The provisioner's SQL (migration 013). Runs on the service connection:
 * like deletion and billing housekeeping, the reconciler works across
 * tenants; every write names its tenant explicitly.
 */
export const provisioningState = {
  /**
   * Tenants the provisioner manages: those with a provisioning row, and
   * those still waiting for their first homeserver (provisioned_at null).
   * Tenants whose homeserver was made elsewhere (CLI, embedded demo) are not listed.
   */
  async listManaged(db: Knex, onlyTenant?: TenantId): Promise<TenantToReconcile[]> {
    const query = db("tenants")
      .leftJoin("provisioning", "provisioning.tenant_id", "tenants.id")
      .where(
        (q) => void q.whereNotNull("provisioning.tenant_id").orWhereNull("tenants.provisioned_at"),
      )
      .orderBy("tenants.created_at")
      .select(
        "tenants.id",
        "tenants.slug",
        "tenants.plan",
        "tenants.delete_after",
        "tenants.provisioned_at",
        "tenants.provision_requested_at",
        db.raw("(select count(*) from tenant_holds h where h.tenant_id = tenants.id) as holds"),
        "provisioning.driver",
        "provisioning.registration_shared_secret_encrypted",
        "provisioning.observed_state",
        "provisioning.failures",
        "provisioning.next_attempt_at",
        "provisioning.last_error",
        "provisioning.reconciled_at",
        "provisioning.admin_user_id",
        "provisioning.admin_password_encrypted",
        "provisioning.management_room_id",
        "provisioning.bootstrapped_at",
      );
    if (onlyTenant !== undefined) void query.where("tenants.id", onlyTenant);
    const rows = (await query) as Row[];
    return rows.map((row) => ({
      tenantId: row.id as TenantId,
      slug: row.slug,
      plan: row.plan,
      deleteAfter: date(row.delete_after),
      provisionedAt: date(row.provisioned_at),
      provisionRequestedAt: date(row.provision_requested_at),
      holds: Number(row.holds),
      provisioning:
        row.driver === null || row.registration_shared_secret_encrypted === null
          ? null
          : {
              driver: row.driver,
              registrationSharedSecretEncrypted: row.registration_shared_secret_encrypted,
              observedState: row.observed_state,
              failures: row.failures ?? 0,
              nextAttemptAt: date(row.next_attempt_at),
              lastError: row.last_error,
              reconciledAt: date(row.reconciled_at),
              adminUserId: row.admin_user_id,
              adminPasswordEncrypted: row.admin_password_encrypted,
              managementRoomId: row.management_room_id,
              bootstrappedAt: date(row.bootstrapped_at),
            },
    }));
  },

  /**
   * True when some tenant asks for a pass now: created for the provisioner
   * and not yet seen by it, or re-provision requested after its last pass.
   * One cheap query, polled between timer passes.
   */
  async hasDemand(db: Knex): Promise<boolean> {
    const row: unknown = await db("tenants")
      .leftJoin("provisioning", "provisioning.tenant_id", "tenants.id")
      .where(
        (q) =>
          void q
            .where(
              (fresh) =>
                void fresh.whereNull("provisioning.tenant_id").whereNull("tenants.provisioned_at"),
            )
            .orWhere(
              (asked) =>
                void asked
                  .whereNotNull("provisioning.tenant_id")
                  .where(
                    (never) =>
                      void never
                        .whereNull("provisioning.reconciled_at")
                        .orWhereRaw("tenants.provision_requested_at > provisioning.reconciled_at"),
                  ),
            ),
      )
      .first("tenants.id");
    return row !== undefined;
  },

  /** Creates the tenant's row unless it exists (a concurrent or earlier pass wins). */
  async adopt(
    db: Knex,
    tenantId: TenantId,
    driver: string,
    registrationSharedSecretEncrypted: string,
  ): Promise<void> {
    await db("provisioning")
      .insert({
        tenant_id: tenantId,
        driver,
        registration_shared_secret_encrypted: registrationSharedSecretEncrypted,
      })
      .onConflict("tenant_id")
      .ignore();
  },

  async update(db: Knex, tenantId: TenantId, fields: Record<string, unknown>): Promise<void> {
    await db("provisioning")
      .where({ tenant_id: tenantId })
      .update({ ...fields, updated_at: db.fn.now() });
  },

  async stepStarted(db: Knex, tenantId: TenantId, step: string, attempt: number): Promise<number> {
    const [row] = (await db("provisioning_steps")
      .insert({ tenant_id: tenantId, step, status: "started", attempt })
      .returning("id")) as { id: number | string }[];
    return Number(row?.id);
  },

  async stepFinished(db: Knex, id: number, error?: string): Promise<void> {
    await db("provisioning_steps")
      .where({ id })
      .update({
        status: error === undefined ? "done" : "failed",
        error: error === undefined ? null : error.slice(0, MAX_ERROR_CHARS),
        finished_at: db.fn.now(),
      });
  },

  /** A tenant's steps, newest first (operators, tests). */
  async steps(
    db: Knex,
    tenantId: TenantId,
    limit = 100,
  ): Promise<{ step: string; status: string; attempt: number; error: string | null }[]> {
    return (await db("provisioning_steps")
      .where({ tenant_id: tenantId })
      .orderBy("id", "desc")
      .limit(limit)
      .select("step", "status", "attempt", "error")) as {
      step: string;
      status: string;
      attempt: number;
      error: string | null;
    }[];
  },

  truncateError(message: string): string {
    return message.slice(0, MAX_ERROR_CHARS);
  },
};
