import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, chmod, readdir } from "node:fs/promises";
import { delimiter, join } from "node:path";
import pg from "pg";
import { AppError } from "../shared/errors.ts";
import { stackNames } from "./docker-stack.ts";
import type { BackupTenant, HomeserverDatabaseBackup } from "./homeserver-database-backup.ts";
import { withAdmin } from "./tenant-database.ts";

/**
 * PostgreSQL homeserver databases (the docker driver with
 * provisioning.docker.postgres): the tenant's database synapse_<slug> on the
 * shared server, named by docker-stack.ts stackNames.
 *
 * pg_dump reads inside one snapshot, so the dump is consistent while Synapse
 * keeps writing. The connection travels in PG* environment variables of the
 * child, never in its arguments: any local user can read those with `ps`.
 */

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const DUMP_FILE = "homeserver.pgdump";
const POSTGRES_LIB_DIR = "/usr/lib/postgresql";
/** The last lines of a tool's stderr are enough to say why it failed. */
const STDERR_KEEP_CHARS = 2_000;

export interface PostgresHomeserverDatabasesOptions {
  /** Superuser-ish URL that may read every tenant database and create missing ones. */
  readonly adminUrl: string;
  /** Where pg_dump/pg_restore live; default: PATH, then the newest /usr/lib/postgresql/<n>/bin. */
  readonly binDir?: string;
}

export function postgresHomeserverDatabases(
  options: PostgresHomeserverDatabasesOptions,
): HomeserverDatabaseBackup {
  const { adminUrl } = options;
  const nameOf = (tenant: BackupTenant): string => {
    const name = stackNames(tenant.slug).database;
    if (!IDENTIFIER.test(name))
      throw new AppError("bad_request", `invalid database name "${name}"`);
    return name;
  };
  return {
    kind: "postgres",
    async dump(tenant, dir) {
      const database = nameOf(tenant);
      if (!(await withAdmin(adminUrl, (client) => databaseExists(client, database)))) return null;
      const pgDump = await findBinary("pg_dump", options.binDir);
      const file = join(dir, DUMP_FILE);
      await run(
        pgDump,
        ["--format=custom", "--no-owner", `--file=${file}`],
        connectionEnv(adminUrl, database),
        "homeserver database backup",
      );
      // It holds password hashes and access tokens: readable by us only.
      await chmod(file, 0o600);
      return DUMP_FILE;
    },
    async restore(tenant, file) {
      const database = nameOf(tenant);
      const pgRestore = await findBinary("pg_restore", options.binDir);
      await withAdmin(adminUrl, (client) => ensureDatabase(client, database));
      // --single-transaction: a corrupt or incompatible dump rolls back and
      // leaves the live database as it was. --role: restored objects belong
      // to the tenant's role (Synapse logs in as it), not to the admin.
      await run(
        pgRestore,
        [
          "--clean",
          "--if-exists",
          "--no-owner",
          "--single-transaction",
          `--role=${database}`,
          `--dbname=${database}`,
          file,
        ],
        connectionEnv(adminUrl, database),
        "homeserver database restore",
      );
    },
  };
}

/**
 * PG* variables for libpq from the admin URL, with the database replaced.
 * Inherited PG* variables are dropped so none (a PGSERVICE, a PGOPTIONS)
 * points the tools somewhere else.
 */
export function connectionEnv(adminUrl: string, database: string): NodeJS.ProcessEnv {
  let url: URL;
  try {
    url = new URL(adminUrl);
  } catch {
    throw new AppError("bad_request", "the PostgreSQL admin URL is not a valid URL");
  }
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith("PG")) env[key] = value;
  const host = url.searchParams.get("host") ?? decodeURIComponent(url.hostname);
  if (host !== "") env.PGHOST = host.replace(/^\[(.*)\]$/, "$1");
  if (url.port !== "") env.PGPORT = url.port;
  if (url.username !== "") env.PGUSER = decodeURIComponent(url.username);
  if (url.password !== "") env.PGPASSWORD = decodeURIComponent(url.password);
  const sslmode = url.searchParams.get("sslmode");
  if (sslmode !== null) env.PGSSLMODE = sslmode;
  env.PGDATABASE = database;
  env.PGAPPNAME = "switchboard-backup";
  return env;
}

/** PATH first (the operator's choice), then the newest installed server version. */
async function findBinary(name: string, binDir: string | undefined): Promise<string> {
  const candidates: string[] = [];
  if (binDir !== undefined) candidates.push(join(binDir, name));
  else {
    for (const dir of (process.env.PATH ?? "").split(delimiter))
      if (dir !== "") candidates.push(join(dir, name));
    const versions = await readdir(POSTGRES_LIB_DIR).catch(() => [] as string[]);
    for (const version of versions
      .filter((entry) => /^\d+$/.test(entry))
      .sort((a, b) => Number(b) - Number(a)))
      candidates.push(join(POSTGRES_LIB_DIR, version, "bin", name));
  }
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Next candidate.
    }
  }
  throw new AppError(
    "unavailable",
    `${name} not found (looked in ${binDir ?? `PATH and ${POSTGRES_LIB_DIR}/*/bin`}); install the PostgreSQL client tools`,
  );
}

/** Runs a tool; a non-zero exit is an "unavailable" AppError with the tool's own reason. */
async function run(
  binary: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  what: string,
): Promise<void> {
  const password = env.PGPASSWORD;
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(binary, args, { env, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk: string) => {
        stderr = (stderr + chunk).slice(-STDERR_KEEP_CHARS);
      });
      child.on("error", reject);
      child.on("close", (code) => {
        resolve({ code, stderr });
      });
    },
  ).catch((error: unknown) => {
    throw new AppError("unavailable", `${what} failed: cannot run ${binary}`, { cause: error });
  });
  if (code === 0) return;
  // libpq does not echo passwords, but a reason is shown to operators: make sure.
  let reason = stderr.trim().split("\n").slice(-3).join("; ");
  if (password !== undefined && password !== "") reason = reason.replaceAll(password, "***");
  throw new AppError(
    "unavailable",
    `${what} failed (exit ${String(code)})${reason === "" ? "" : `: ${reason}`}`,
  );
}

async function databaseExists(client: pg.Client, name: string): Promise<boolean> {
  const result = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
  return (result.rowCount ?? 0) > 0;
}

/**
 * The tenant's role and database as ensureTenantDatabase makes them, for a
 * restore onto a server that lost them. The role is created without LOGIN
 * or password (we do not hold the tenant's secret here): the driver's next
 * ensure finds it and sets both.
 */
async function ensureDatabase(client: pg.Client, name: string): Promise<void> {
  const id = `"${name}"`;
  const role = await client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name]);
  if ((role.rowCount ?? 0) === 0) await client.query(`CREATE ROLE ${id}`);
  if (await databaseExists(client, name)) return;
  // Synapse refuses databases whose collation is not C.
  await client.query(
    `CREATE DATABASE ${id} OWNER ${id} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
  );
}
