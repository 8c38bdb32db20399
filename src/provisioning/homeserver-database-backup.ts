import { chmod, copyFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { backup, DatabaseSync } from "node:sqlite";
import { AppError, describeError } from "../shared/errors.ts";
import { DATA_DIR_LAYOUT } from "../synapse/homeserver-config.ts";

/** Which tenant a homeserver database belongs to. */
export interface BackupTenant {
  readonly id: string;
  readonly slug: string;
}

/**
 * Dumps and restores a tenant homeserver's database. A separate interface
 * from HomeserverDriver: where the database lives (a SQLite file beside the
 * process, a database on a shared PostgreSQL server) decides how it is
 * copied, not how the homeserver runs.
 */
export interface HomeserverDatabaseBackup {
  /** Stored in manifests ("sqlite", "postgres"). */
  readonly kind: string;
  /**
   * Writes a consistent copy of the tenant's homeserver database into `dir`
   * while the homeserver may be running, and returns the file's name; null
   * when the tenant has no database here yet (never provisioned). Must not
   * change the live database.
   */
  dump(tenant: BackupTenant, dir: string): Promise<string | null>;
  /**
   * Replaces the tenant's homeserver database with `file` (a dump's file).
   * Only while the homeserver is stopped: the caller checks (the driver's
   * inspect) and starts it again afterwards.
   */
  restore(tenant: BackupTenant, file: string): Promise<void>;
}

/**
 * SQLite homeserver databases (the local driver's default): the file
 * <homeserversDir>/<slug>/homeserver.db. The dump uses SQLite's online backup
 * API (node:sqlite), which copies a consistent snapshot page by page while
 * Synapse keeps writing; a plain file copy could catch a half-written page.
 */
export function sqliteHomeserverDatabases(homeserversDir: string): HomeserverDatabaseBackup {
  const pathOf = (tenant: BackupTenant): string =>
    join(homeserversDir, tenant.slug, DATA_DIR_LAYOUT.sqliteDatabase);
  return {
    kind: "sqlite",
    async dump(tenant, dir) {
      const live = pathOf(tenant);
      if (!(await exists(live))) return null;
      const name = "homeserver.db";
      const source = new DatabaseSync(live, { readOnly: true });
      try {
        await backup(source, join(dir, name));
      } catch (error) {
        throw new AppError(
          "unavailable",
          `homeserver database backup failed: ${describeError(error)}`,
        );
      } finally {
        source.close();
      }
      // It holds password hashes and access tokens: readable by us only.
      await chmod(join(dir, name), 0o600);
      return name;
    },
    async restore(tenant, file) {
      const live = pathOf(tenant);
      // Copied beside the live file first, then renamed over it: a crash
      // leaves either the old database or the new one, never half of each.
      const staged = `${live}.restoring`;
      await copyFile(file, staged);
      // Leftover journal files belong to the old database; SQLite would
      // replay them onto the restored one.
      await rm(`${live}-wal`, { force: true });
      await rm(`${live}-shm`, { force: true });
      await rm(`${live}-journal`, { force: true });
      await rename(staged, live);
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
