import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stackNames } from "../../src/provisioning/docker-stack.ts";
import type { BackupTenant } from "../../src/provisioning/homeserver-database-backup.ts";
import {
  connectionEnv,
  postgresHomeserverDatabases,
} from "../../src/provisioning/postgres-homeserver-backup.ts";
import {
  dropTenantDatabase,
  ensureTenantDatabase,
} from "../../src/provisioning/tenant-database.ts";
import { AppError } from "../../src/shared/errors.ts";
import { TEST_POSTGRES_URL } from "../support/database.ts";

const backups = postgresHomeserverDatabases({ adminUrl: TEST_POSTGRES_URL });
const created: string[] = [];
let dir: string;

function tenant(): BackupTenant {
  const slug = `bk-${randomBytes(4).toString("hex")}`;
  created.push(stackNames(slug).database);
  return { id: randomUUID(), slug };
}

function urlOf(database: string): string {
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

async function query<T extends pg.QueryResultRow>(database: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: urlOf(database) });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const EVENTS = "SELECT id, body, owner FROM events ORDER BY id";

/** A tenant database as the docker driver makes it, with Synapse-like rows owned by its role. */
async function seeded(): Promise<{ tenant: BackupTenant; database: string }> {
  const t = tenant();
  const database = stackNames(t.slug).database;
  await ensureTenantDatabase(TEST_POSTGRES_URL, database, "not-used-here");
  await query(
    database,
    `SET ROLE ${database};
     CREATE TABLE events (id int PRIMARY KEY, body text NOT NULL, owner text DEFAULT current_user);
     INSERT INTO events (id, body) VALUES (1, 'hello'), (2, 'wörld ✓'), (3, E'multi\\nline');`,
  );
  return { tenant: t, database };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pg-hs-backup-"));
});

afterAll(async () => {
  for (const database of created) await dropTenantDatabase(TEST_POSTGRES_URL, database);
  await rm(dir, { recursive: true, force: true });
});

describe("postgresHomeserverDatabases", () => {
  it("dumps a tenant database and restores its rows exactly, owned by the tenant's role", async () => {
    const { tenant: t, database } = await seeded();
    const before = await query(database, EVENTS);
    const out = await mkdtemp(join(dir, "dump-"));

    const name = await backups.dump(t, out);
    expect(name).toBe("homeserver.pgdump");
    expect((await stat(join(out, name ?? ""))).mode & 0o777).toBe(0o600);
    expect((await readFile(join(out, name ?? ""))).subarray(0, 5).toString()).toBe("PGDMP");

    await query(
      database,
      `UPDATE events SET body = 'changed' WHERE id = 1; DELETE FROM events WHERE id = 2;
       INSERT INTO events (id, body) VALUES (4, 'new');`,
    );
    await backups.restore(t, join(out, name ?? ""));

    expect(await query(database, EVENTS)).toEqual(before);
    const [owner] = await query<{ tableowner: string }>(
      database,
      "SELECT tableowner FROM pg_tables WHERE tablename = 'events'",
    );
    expect(owner?.tableowner).toBe(database);
  });

  it("restores into a database that was dropped, creating it", async () => {
    const { tenant: t, database } = await seeded();
    const before = await query(database, EVENTS);
    const out = await mkdtemp(join(dir, "dump-"));
    const name = await backups.dump(t, out);
    await dropTenantDatabase(TEST_POSTGRES_URL, database);

    await backups.restore(t, join(out, name ?? ""));

    expect(await query(database, EVENTS)).toEqual(before);
    // The driver's next ensure gives the recreated role its login and password.
    expect(await ensureTenantDatabase(TEST_POSTGRES_URL, database, "again")).toEqual({
      created: false,
    });
  });

  it("returns null for a tenant without a database", async () => {
    const out = await mkdtemp(join(dir, "dump-"));
    expect(await backups.dump(tenant(), out)).toBeNull();
  });

  it("rejects a corrupt dump with a clear error and leaves the live database unchanged", async () => {
    const { tenant: t, database } = await seeded();
    const before = await query(database, EVENTS);
    const out = await mkdtemp(join(dir, "dump-"));
    const name = await backups.dump(t, out);
    const good = await readFile(join(out, name ?? ""));

    const garbage = join(out, "garbage.pgdump");
    await writeFile(garbage, randomBytes(4096));
    const truncated = join(out, "truncated.pgdump");
    await writeFile(truncated, good.subarray(0, Math.floor(good.length * 0.8)));

    for (const file of [garbage, truncated]) {
      const error = await backups.restore(t, file).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe("unavailable");
      expect((error as AppError).message).toMatch(/^homeserver database restore failed/);
      expect(await query(database, EVENTS)).toEqual(before);
    }
  });

  it("reports a missing binary as unavailable", async () => {
    const { tenant: t } = await seeded();
    const broken = postgresHomeserverDatabases({ adminUrl: TEST_POSTGRES_URL, binDir: dir });
    const error = await broken.dump(t, dir).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("unavailable");
    expect((error as AppError).message).toContain("pg_dump not found");
  });

  it("passes the connection in PG* variables, and a failed dump does not reveal the password", async () => {
    const env = connectionEnv(
      "postgres://admin:s%40cret@db.example:6543/postgres?sslmode=require",
      "synapse_x",
    );
    expect(env).toMatchObject({
      PGHOST: "db.example",
      PGPORT: "6543",
      PGUSER: "admin",
      PGPASSWORD: "s@cret",
      PGDATABASE: "synapse_x",
      PGSSLMODE: "require",
    });

    const { tenant: t } = await seeded();
    const url = new URL(TEST_POSTGRES_URL);
    url.username = "no_such_role_for_backup";
    url.password = "hunter2-secret";
    const failing = postgresHomeserverDatabases({ adminUrl: url.toString() });
    const error = await failing.dump(t, dir).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("unavailable");
    expect((error as AppError).message).not.toContain("hunter2-secret");
  });
});
