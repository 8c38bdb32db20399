import { createHash } from "node:crypto";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { MIGRATIONS } from "../db/migrations/index.ts";
import { withSystemTransaction, withTenant } from "../db/tenant-transaction.ts";
import { AppError, describeError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { BackupTenant, HomeserverDatabaseBackup } from "./homeserver-database-backup.ts";
import { readManifest, writeManifest, type BackupManifest } from "./backup-manifest.ts";
import { removeOrphanedBackups } from "./backup-orphans.ts";
import { exportTenantData, parseTenantData, replaceTenantData } from "./tenant-data.ts";

const MS_PER_HOUR = 3_600_000;
/** A backup still "running" after this long was interrupted (its process died). */
const STALE_RUNNING_MS = 2 * MS_PER_HOUR;
/** The scheduler looks for due tenants at least this often, whatever the interval. */
const MAX_SCHEDULE_CHECK_MS = 10 * 60_000;
const FIRST_PASS_DELAY_MS = 60_000;
export const DATA_FILE = "switchboard.json";

export interface BackupSchedule {
  /** A tenant is due when its newest completed backup is older than this. */
  readonly intervalHours: number;
  /** Completed backups kept per tenant; older ones are deleted with their files. */
  readonly retain: number;
}

export type BackupStatus = "running" | "completed" | "failed";

export interface BackupRecord {
  readonly id: string;
  readonly tenantId: TenantId;
  readonly path: string;
  readonly createdAt: Date;
  readonly bytes: number | null;
  readonly status: BackupStatus;
  readonly error: string | null;
}

export interface RestoreResult {
  /** Rows restored per table. */
  readonly rows: Readonly<Record<string, number>>;
  /** Whether the homeserver's database was replaced too. */
  readonly homeserverDatabase: boolean;
}

export interface TenantBackupsDeps {
  readonly db: Knex;
  /** <dataDir>/backups: one directory per tenant slug, one per backup inside. */
  readonly backupsDir: string;
  readonly schedule: BackupSchedule;
  readonly log: Logger;
  /** Absent: backups hold the Switchboard data only. */
  readonly homeserverDatabase?: HomeserverDatabaseBackup;
  /** True when the tenant's homeserver is stopped (the driver's inspect); needed to restore its database. */
  readonly homeserverStopped?: (tenantId: TenantId) => Promise<boolean>;
}

interface BackupRow {
  id: string;
  tenant_id: string;
  path: string;
  created_at: Date | string;
  bytes: number | string | null;
  status: BackupStatus;
  error: string | null;
}

/**
 * Per-tenant backups: the tenant's Switchboard rows (tenant-data.ts) and its
 * homeserver's database, in <backupsDir>/<slug>/<timestamp>/ with a
 * manifest (sizes, SHA-256, versions) written last, so a directory without
 * a valid manifest is never restored. Taken on a schedule by the provisioner
 * and on demand (CLI, admin page); restored by the CLI.
 */
export class TenantBackups {
  readonly #deps: TenantBackupsDeps;
  #timer: NodeJS.Timeout | undefined;
  #first: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();

  constructor(deps: TenantBackupsDeps) {
    this.#deps = deps;
  }

  /** Takes a backup now. A failure is recorded on the backup's row and thrown. */
  async create(tenant: BackupTenant): Promise<BackupRecord> {
    const { db, log } = this.#deps;
    const tenantId = tenant.id as TenantId;
    const createdAt = new Date();
    const dir = resolve(
      this.#deps.backupsDir,
      tenant.slug,
      createdAt.toISOString().replaceAll(":", "-"),
    );
    const { id } = await withTenant(db, tenantId, async (trx) => {
      const [row] = (await trx("backups")
        .insert({ tenant_id: tenantId, path: dir, created_at: createdAt, status: "running" })
        .returning("id")) as { id: string }[];
      if (row === undefined) throw new AppError("internal", "backup row not created");
      return row;
    });
    try {
      const manifest = await this.#write(tenant, dir, createdAt);
      const bytes = manifest.files.reduce((sum, file) => sum + file.bytes, 0);
      await withTenant(db, tenantId, (trx) =>
        trx("backups").where({ id }).update({ status: "completed", bytes }),
      );
      log.info({ tenantId, backupId: id, bytes }, "tenant backup completed");
      return { id, tenantId, path: dir, createdAt, bytes, status: "completed", error: null };
    } catch (error) {
      const message = describeError(error).slice(0, 500);
      await rm(dir, { recursive: true, force: true });
      await withTenant(db, tenantId, (trx) =>
        trx("backups").where({ id }).update({ status: "failed", error: message }),
      );
      log.error({ tenantId, backupId: id, err: message }, "tenant backup failed");
      throw error;
    }
  }

  async #write(tenant: BackupTenant, dir: string, createdAt: Date): Promise<BackupManifest> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const { text, rowCounts } = await exportTenantData(this.#deps.db, tenant.id as TenantId);
    await writeFile(join(dir, DATA_FILE), text, { mode: 0o600 });
    const files = [await describeFile(dir, DATA_FILE, "switchboard-data", "json")];
    const hsdb = this.#deps.homeserverDatabase;
    if (hsdb !== undefined) {
      const name = await hsdb.dump(tenant, dir);
      if (name !== null)
        files.push(await describeFile(dir, name, "homeserver-database", hsdb.kind));
    }
    const manifest: BackupManifest = {
      format: "switchboard-tenant-backup",
      version: 1,
      tenant: { id: tenant.id, slug: tenant.slug },
      createdAt: createdAt.toISOString(),
      schema: currentSchema(),
      switchboardVersion: await packageVersion(),
      rowCounts,
      files,
    };
    await writeManifest(dir, manifest);
    return manifest;
  }

  /** The tenant's backups, newest first. */
  async list(tenantId: TenantId): Promise<BackupRecord[]> {
    const rows = await withTenant(
      this.#deps.db,
      tenantId,
      (trx) => trx("backups").orderBy("created_at", "desc").select() as Promise<BackupRow[]>,
    );
    return rows.map(toRecord);
  }

  /** Each tenant's newest backup (any status), for the admin area. */
  async latestPerTenant(): Promise<Map<TenantId, BackupRecord>> {
    const rows = await withSystemTransaction(
      this.#deps.db,
      (trx) =>
        trx("backups")
          .distinctOn("tenant_id")
          .orderBy([{ column: "tenant_id" }, { column: "created_at", order: "desc" }])
          .select() as Promise<BackupRow[]>,
    );
    return new Map(rows.map((row) => [row.tenant_id as TenantId, toRecord(row)]));
  }

  /**
   * Replaces the tenant's Switchboard rows with a backup's, in one
   * transaction, after checking everything first: the manifest, that the
   * backup is this tenant's, every file's size and SHA-256, and the data
   * file. Any mismatch is a bad_request and nothing is written. With
   * `homeserverDatabase`, the homeserver's database is restored too; that
   * needs the homeserver stopped (suspend the tenant first).
   */
  async restore(
    tenant: BackupTenant,
    dir: string,
    by: Actor,
    options: { homeserverDatabase?: boolean } = {},
  ): Promise<RestoreResult> {
    const tenantId = tenant.id as TenantId;
    const manifest = await readManifest(dir);
    if (manifest.tenant.id !== tenant.id)
      throw new AppError(
        "bad_request",
        `this backup belongs to tenant ${manifest.tenant.slug} (${manifest.tenant.id}), not ${tenant.slug}`,
      );
    if (!MIGRATIONS.some((migration) => migration.name === manifest.schema))
      throw new AppError(
        "bad_request",
        `this backup was made by a newer Switchboard (schema ${manifest.schema}); upgrade before restoring it`,
      );
    for (const file of manifest.files) await verifyFile(dir, file);
    const dataFile = manifest.files.find((file) => file.kind === "switchboard-data");
    if (dataFile === undefined)
      throw new AppError("bad_request", "the backup's manifest lists no Switchboard data file");
    const data = parseTenantData(await readFile(join(dir, dataFile.name), "utf8"), tenantId);

    const hsFile = manifest.files.find((file) => file.kind === "homeserver-database");
    const withHomeserver = options.homeserverDatabase === true;
    if (withHomeserver) {
      const hsdb = this.#deps.homeserverDatabase;
      if (hsFile === undefined || hsdb === undefined || hsFile.format !== hsdb.kind)
        throw new AppError(
          "bad_request",
          "this backup has no homeserver database this driver can restore",
        );
      const stopped = this.#deps.homeserverStopped;
      if (stopped === undefined || !(await stopped(tenantId)))
        throw new AppError(
          "conflict",
          "the tenant's homeserver is running: suspend the tenant, restore, then resume it",
        );
    }

    const rows = await withTenant(this.#deps.db, tenantId, async (trx) => {
      const restored = await replaceTenantData(trx, tenantId, data).catch((error: unknown) => {
        if ((error as { code?: string }).code === "23503")
          throw new AppError(
            "conflict",
            "the backup refers to a portal account that no longer exists; nothing was restored",
          );
        throw error;
      });
      await auditLog.recordBy(trx, tenantId, by, "tenant.backup_restore", basename(dir), {
        createdAt: manifest.createdAt,
        homeserverDatabase: withHomeserver,
      });
      return restored;
    });
    // After the rows commit: a homeserver restore cannot roll back with them,
    // and it is only reached once the data is verified and in.
    if (withHomeserver && hsFile !== undefined)
      await this.#deps.homeserverDatabase?.restore(tenant, join(dir, hsFile.name));
    this.#deps.log.info({ tenantId, backup: dir, withHomeserver }, "tenant backup restored");
    return { rows, homeserverDatabase: withHomeserver };
  }

  /**
   * One scheduler pass: backs up every tenant whose newest completed backup
   * is older than the interval (or that has none), then prunes, and
   * removes directories no backup records (purged tenants). A tenant's
   * failure is logged and does not stop the others. Returns the slugs
   * backed up.
   */
  async runDue(now: Date = new Date()): Promise<string[]> {
    const { db, schedule } = this.#deps;
    const dueBefore = new Date(now.getTime() - schedule.intervalHours * MS_PER_HOUR);
    const staleBefore = new Date(now.getTime() - STALE_RUNNING_MS);
    const due = await withSystemTransaction(db, async (trx) => {
      await trx("backups")
        .where({ status: "running" })
        .where("created_at", "<", staleBefore)
        .update({ status: "failed", error: "interrupted" });
      return (await trx("tenants")
        .whereNotExists(
          trx("backups")
            .whereRaw("backups.tenant_id = tenants.id")
            .where("created_at", ">", dueBefore)
            .whereIn("status", ["completed", "running"]),
        )
        .orderBy("slug")
        .select("id", "slug")) as BackupTenant[];
    });
    const done: string[] = [];
    for (const tenant of due) {
      try {
        await this.create(tenant);
        done.push(tenant.slug);
      } catch {
        // Recorded on its row and logged by create().
      }
      await this.prune(tenant.id as TenantId);
    }
    await removeOrphanedBackups(db, this.#deps.backupsDir, this.#deps.log);
    return done;
  }

  /**
   * Keeps the newest `retain` completed backups of a tenant (and anything
   * newer than the oldest of them); deletes older rows and their directories.
   */
  async prune(tenantId: TenantId): Promise<number> {
    const rows = await this.list(tenantId);
    let completed = 0;
    const doomed: BackupRecord[] = [];
    for (const row of rows) {
      if (completed >= this.#deps.schedule.retain) doomed.push(row);
      else if (row.status === "completed") completed += 1;
    }
    for (const row of doomed) {
      await rm(row.path, { recursive: true, force: true });
      await withTenant(this.#deps.db, tenantId, (trx) =>
        trx("backups").where({ id: row.id }).delete(),
      );
    }
    return doomed.length;
  }

  /**
   * Runs runDue shortly after start (not at once: the provisioner's first
   * pass starts homeservers then) and then periodically until stop().
   */
  start(): void {
    if (this.#timer !== undefined || this.#first !== undefined) return;
    const everyMs = Math.min(
      this.#deps.schedule.intervalHours * MS_PER_HOUR,
      MAX_SCHEDULE_CHECK_MS,
    );
    const tick = (): void => {
      this.#running = this.runDue().catch((error: unknown) => {
        this.#deps.log.error({ err: describeError(error) }, "backup schedule pass failed");
      });
    };
    this.#first = setTimeout(
      () => {
        this.#first = undefined;
        tick();
        this.#timer = setInterval(tick, everyMs);
        this.#timer.unref();
      },
      Math.min(FIRST_PASS_DELAY_MS, everyMs),
    );
    this.#first.unref();
  }

  /** Stops the schedule and waits for a pass in progress. */
  async stop(): Promise<void> {
    clearTimeout(this.#first);
    clearInterval(this.#timer);
    this.#first = undefined;
    this.#timer = undefined;
    await this.#running;
  }
}

async function describeFile(
  dir: string,
  name: string,
  kind: BackupManifest["files"][number]["kind"],
  format: string,
): Promise<BackupManifest["files"][number]> {
  const content = await readFile(join(dir, name));
  return { name, kind, format, bytes: content.length, sha256: sha256(content) };
}

async function verifyFile(dir: string, file: BackupManifest["files"][number]): Promise<void> {
  const path = join(dir, file.name);
  let content: Buffer;
  try {
    if (!(await stat(path)).isFile()) throw new Error("not a file");
    content = await readFile(path);
  } catch {
    throw new AppError("bad_request", `the backup's file ${file.name} is missing`);
  }
  if (content.length !== file.bytes || sha256(content) !== file.sha256)
    throw new AppError(
      "bad_request",
      `the backup's file ${file.name} does not match its manifest (corrupt or changed)`,
    );
}

function sha256(content: Buffer): string {
  return createHash("sha256").update(content).digest("hex");
}

function currentSchema(): string {
  return MIGRATIONS[MIGRATIONS.length - 1]?.name ?? "none";
}

let cachedVersion: string | undefined;
async function packageVersion(): Promise<string> {
  if (cachedVersion === undefined) {
    const text = await readFile(new URL("../../package.json", import.meta.url), "utf8");
    const { version } = JSON.parse(text) as { version?: unknown };
    cachedVersion = typeof version === "string" ? version : "unknown";
  }
  return cachedVersion;
}

function toRecord(row: BackupRow): BackupRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id as TenantId,
    path: row.path,
    createdAt: new Date(row.created_at),
    bytes: row.bytes === null ? null : Number(row.bytes),
    status: row.status,
    error: row.error,
  };
}
