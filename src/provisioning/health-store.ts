import type { Knex } from "knex";
import { withSystemTransaction } from "../db/tenant-transaction.ts";
import type { TenantId } from "../shared/ids.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import { HEALTHY, type HealthRecord, type HealthStatus, type HealthStore } from "./health.ts";

interface Row {
  tenant_id: string;
  status: HealthStatus;
  consecutive_failures: number;
  restarts: number;
  next_restart_at: Date | string | null;
  alerted_at: Date | string | null;
  last_error: string | null;
  last_checked_at: Date | string | null;
  last_healthy_at: Date | string | null;
}

const date = (value: Date | string | null): Date | null =>
  value === null ? null : new Date(value);

/** last_error is shown to operators; homeserver answers can be long. */
const MAX_ERROR_CHARS = 1_000;

function toRecord(row: Row | undefined): HealthRecord {
  if (row === undefined) return HEALTHY;
  return {
    status: row.status,
    consecutiveFailures: Number(row.consecutive_failures),
    restarts: Number(row.restarts),
    nextRestartAt: date(row.next_restart_at),
    alertedAt: date(row.alerted_at),
    lastError: row.last_error,
    lastCheckedAt: date(row.last_checked_at),
    lastHealthyAt: date(row.last_healthy_at),
  };
}

/**
 * The health monitor's records in homeserver_health (migration 014), on the
 * service connection like the reconciler's bookkeeping: the monitor works
 * across tenants and every write names its tenant.
 */
export function databaseHealthStore(db: Knex, tenants: TenantRepository): HealthStore {
  return {
    async targets() {
      // Running is what the provisioner aims for: active (no hold), not being
      // deleted, provisioned and bootstrapped by the reconciler.
      const rows = (await db("tenants")
        .join("provisioning", "provisioning.tenant_id", "tenants.id")
        .where("tenants.status", "active")
        .whereNull("tenants.delete_after")
        .whereNotNull("tenants.provisioned_at")
        .whereNotNull("provisioning.bootstrapped_at")
        .orderBy("tenants.slug")
        .select("tenants.id", "tenants.slug")) as { id: TenantId; slug: string }[];
      const targets = [];
      for (const row of rows) {
        const homeserver = await tenants.findHomeserver(db, row.id);
        if (homeserver === undefined) continue;
        targets.push({
          tenantId: row.id,
          slug: row.slug,
          clientUrl: homeserver.clientUrl,
          registrationId: homeserver.registrationId,
          asToken: homeserver.asToken,
        });
      }
      return targets;
    },
    async read(tenantId) {
      return toRecord(
        (await db("homeserver_health").where({ tenant_id: tenantId }).first()) as Row | undefined,
      );
    },
    async write(tenantId, record) {
      const row = {
        tenant_id: tenantId,
        status: record.status,
        consecutive_failures: record.consecutiveFailures,
        restarts: record.restarts,
        next_restart_at: record.nextRestartAt,
        alerted_at: record.alertedAt,
        last_error: record.lastError?.slice(0, MAX_ERROR_CHARS) ?? null,
        last_checked_at: record.lastCheckedAt,
        last_healthy_at: record.lastHealthyAt,
      };
      await withSystemTransaction(db, (trx) =>
        trx("homeserver_health").insert(row).onConflict("tenant_id").merge(),
      );
    },
    async countDegraded() {
      const row = (await db("homeserver_health")
        .where({ status: "degraded" })
        .count({ n: "*" })
        .first()) as { n: number | string } | undefined;
      return Number(row?.n ?? 0);
    },
  };
}

/**
 * Asks the reconciler for a fresh pass for the tenant that skips its
 * backoff (as an operator's re-provision does): after the monitor stopped
 * an unhealthy stack, that pass's ensure starts it again.
 */
export async function requestReprovision(db: Knex, tenantId: TenantId): Promise<void> {
  await withSystemTransaction(db, (trx) =>
    trx("tenants").where({ id: tenantId }).update({ provision_requested_at: trx.fn.now() }),
  );
}

/** Each degraded tenant's record, for the admin area. */
export async function degradedHomeservers(db: Knex): Promise<Map<TenantId, HealthRecord>> {
  const rows = (await db("homeserver_health").where({ status: "degraded" }).select()) as Row[];
  return new Map(rows.map((row) => [row.tenant_id as TenantId, toRecord(row)]));
}

/** One tenant's health record (healthy when never checked), for its overview. */
export async function homeserverHealthOf(
  trx: Knex | Knex.Transaction,
  tenantId: TenantId,
): Promise<HealthRecord> {
  return toRecord(
    (await trx("homeserver_health").where({ tenant_id: tenantId }).first()) as Row | undefined,
  );
}
