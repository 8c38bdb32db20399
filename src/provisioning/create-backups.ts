import { join, resolve } from "node:path";
import type { Knex } from "knex";
import type { Config } from "../config/schema.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { TenantBackups } from "./backups.ts";
import {
  sqliteHomeserverDatabases,
  type HomeserverDatabaseBackup,
} from "./homeserver-database-backup.ts";
import { postgresHomeserverDatabases } from "./postgres-homeserver-backup.ts";

/**
 * Backups as configured: under provisioning.backups.dir (default
 * <dataDir>/backups), with the homeserver databases of the local driver
 * (SQLite files under <dataDir>/homeservers) or of the docker driver with
 * provisioning.docker.postgres (per-tenant databases, pg_dump). The docker
 * driver's SQLite files live in volumes and are not dumped: its backups
 * then hold the Switchboard data only.
 */
export function createTenantBackups(
  config: Readonly<Config>,
  db: Knex,
  log: Logger,
): TenantBackups {
  const { backups } = config.provisioning;
  return new TenantBackups({
    db,
    backupsDir: resolve(backups.dir ?? join(config.dataDir, "backups")),
    schedule: { intervalHours: backups.intervalHours, retain: backups.retain },
    log: log.child({ module: "backups" }),
    ...homeserverDatabases(config),
    homeserverStopped: (tenantId) => homeserverStopped(db, tenantId),
  });
}

function homeserverDatabases(config: Readonly<Config>): {
  homeserverDatabase?: HomeserverDatabaseBackup;
} {
  const { driver, docker } = config.provisioning;
  if (driver === "local")
    return { homeserverDatabase: sqliteHomeserverDatabases(join(config.dataDir, "homeservers")) };
  // The same admin URL the docker driver creates the databases with.
  const adminUrl = docker.postgres?.adminUrl ?? config.database.url;
  if (docker.postgres !== undefined && adminUrl !== undefined)
    return { homeserverDatabase: postgresHomeserverDatabases({ adminUrl }) };
  return {};
}

/**
 * Whether the provisioner has stopped the tenant's homeserver: the tenant
 * is suspended and the last observation says stopped. Read from the
 * database, not a driver: the local driver only knows the processes of its
 * own process, and restores run from the CLI.
 */
async function homeserverStopped(db: Knex, tenantId: TenantId): Promise<boolean> {
  const row = (await db("tenants")
    .join("provisioning", "provisioning.tenant_id", "tenants.id")
    .where("tenants.id", tenantId)
    .first("tenants.status", "provisioning.observed_state")) as
    { status: string; observed_state: string | null } | undefined;
  return (
    row !== undefined &&
    row.status === "suspended" &&
    (row.observed_state === "stopped" || row.observed_state === "absent")
  );
}
