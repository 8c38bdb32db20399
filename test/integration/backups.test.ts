import { cp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { TenantBackups, DATA_FILE } from "../../src/provisioning/backups.ts";
import { MANIFEST_FILE } from "../../src/provisioning/backup-manifest.ts";
import { KEPT_TABLES, RESTORED_TABLES } from "../../src/provisioning/tenant-data.ts";
import { sqliteHomeserverDatabases } from "../../src/provisioning/homeserver-database-backup.ts";
import { DatabaseSync } from "node:sqlite";
import { mkdir } from "node:fs/promises";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { tenantDeletion } from "../../src/tenants/deletion.ts";
import { startPortalTest, type PortalTest } from "../support/portal.ts";

const OPS: Actor = { id: "ops@example.org", via: "cli" };
const HOURS_MS = 3_600_000;

describe.each(BACKENDS)("tenant backups (%s)", (backend) => {
  let t: PortalTest;
  let backups: TenantBackups;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };

  /** Every restored table's rows for a tenant, as PostgreSQL renders them (exact). */
  async function snapshot(tenantId: TenantId): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const table of RESTORED_TABLES) {
      const result = (await t.app.database.knex.raw(
        `select to_jsonb(x)::text as row from ${table} x where tenant_id = ? order by 1`,
        [tenantId],
      )) as { rows: { row: string }[] };
      out[table] = result.rows.map((r) => r.row);
    }
    return out;
  }

  async function seedMemory(tenantId: TenantId, agentName: string, fact: string): Promise<void> {
    await t.app.agents.create(tenantId, { name: agentName, provider: "openai" }, OPS);
    await withTenant(t.app.database.knex, tenantId, async (trx) => {
      const [person] = (await trx("people")
        .insert({ tenant_id: tenantId, display_name: "Alice" })
        .returning("id")) as { id: string }[];
      await trx("person_identities").insert({
        tenant_id: tenantId,
        user_id: `@alice-${agentName}:example.test`,
        person_id: person?.id,
        platform: "matrix",
      });
      const [first] = (await trx("facts")
        .insert({
          tenant_id: tenantId,
          subject_kind: "person",
          subject_person_id: person?.id,
          content: `${fact} (old)`,
          source_kind: "explicit",
          valid_to: trx.raw("now()"),
        })
        .returning("id")) as { id: string }[];
      const [second] = (await trx("facts")
        .insert({
          tenant_id: tenantId,
          subject_kind: "person",
          subject_person_id: person?.id,
          content: fact,
          source_kind: "explicit",
        })
        .returning("id")) as { id: string }[];
      // A fact superseding another: rows of one table that refer to each other.
      await trx("facts").where({ id: first?.id }).update({ superseded_by: second?.id });
    });
  }

  beforeAll(async () => {
    t = await startPortalTest({ database: backend });
    backups = new TenantBackups({
      db: t.app.database.knex,
      backupsDir: join(t.config.dataDir, "backups"),
      schedule: { intervalHours: 6, retain: 2 },
      log: t.app.log,
    });
    acme = await seedTenant(t, "acme");
    other = await seedTenant(t, "other");
    await seedMemory(acme.id, "helper", "Alice likes green tea");
    await seedMemory(other.id, "scout", "Alice from other likes coffee");
  });
  afterAll(async () => {
    await t.stop();
  });

  it("classifies every table that holds tenant rows as restored or kept", async () => {
    const result = (await t.app.database.knex.raw(
      `select table_name from information_schema.columns
        where column_name = 'tenant_id' and table_schema = current_schema()`,
    )) as { rows: { table_name: string }[] };
    const tenantTables = result.rows.map((row) => row.table_name).sort();
    expect(
      [...RESTORED_TABLES, ...KEPT_TABLES].filter((x) => tenantTables.includes(x)).sort(),
    ).toEqual(tenantTables);
    expect(RESTORED_TABLES.filter((table) => KEPT_TABLES.includes(table))).toEqual([]);
  });

  it("backs up, lists, and restores deleted facts and agents exactly", async () => {
    const before = await snapshot(acme.id);
    const otherBefore = await snapshot(other.id);
    const made = await backups.create(acme);
    expect(made.status).toBe("completed");
    expect(made.bytes).toBeGreaterThan(0);
    expect(made.path).toContain(join("backups", "acme"));
    const manifest = JSON.parse(await readFile(join(made.path, MANIFEST_FILE), "utf8")) as {
      tenant: { id: string };
      files: { name: string; sha256: string; bytes: number }[];
      rowCounts: Record<string, number>;
    };
    expect(manifest.tenant.id).toBe(acme.id);
    expect(manifest.rowCounts.facts).toBe(2);
    expect(manifest.files[0]?.bytes).toBe((await stat(join(made.path, DATA_FILE))).size);
    expect((await backups.list(acme.id)).map((b) => b.id)).toEqual([made.id]);
    expect(await backups.list(other.id)).toEqual([]);

    // Lose data: the facts, an agent (its facts cascade), and add something new.
    await withTenant(t.app.database.knex, acme.id, async (trx) => {
      await trx("facts").delete();
      await trx("agents").delete();
      await trx("people").insert({ tenant_id: acme.id, display_name: "Bob" });
    });
    expect((await snapshot(acme.id)).facts).toEqual([]);

    const result = await backups.restore(acme, made.path, OPS);
    expect(result.rows.facts).toBe(2);
    const after = await snapshot(acme.id);
    // The restore itself is audited on top of the restored log.
    expect(after.audit_log?.length).toBe((before.audit_log?.length ?? 0) + 1);
    expect({ ...after, audit_log: [] }).toEqual({ ...before, audit_log: [] });
    expect(after.audit_log?.slice(0, before.audit_log?.length)).toEqual(before.audit_log);
    expect(await snapshot(other.id)).toEqual(otherBefore);
  });

  it("refuses another tenant's backup, and a corrupt or invalid manifest, writing nothing", async () => {
    const made = await backups.create(acme);
    const otherBefore = await snapshot(other.id);
    await expect(backups.restore(other, made.path, OPS)).rejects.toThrow(/belongs to tenant acme/);
    expect(await snapshot(other.id)).toEqual(otherBefore);

    const acmeBefore = await snapshot(acme.id);
    const corrupt = `${made.path}-corrupt`;
    await cp(made.path, corrupt, { recursive: true });
    const dataPath = join(corrupt, DATA_FILE);
    await writeFile(dataPath, (await readFile(dataPath, "utf8")).replace("green tea", "green teb"));
    await expect(backups.restore(acme, corrupt, OPS)).rejects.toThrow(
      /does not match its manifest/,
    );
    await writeFile(join(corrupt, MANIFEST_FILE), "{ not json");
    await expect(backups.restore(acme, corrupt, OPS)).rejects.toThrow(/not valid JSON/);
    await writeFile(join(corrupt, MANIFEST_FILE), JSON.stringify({ format: "other" }));
    await expect(backups.restore(acme, corrupt, OPS)).rejects.toThrow(/manifest.json is invalid/);
    await expect(backups.restore(acme, join(corrupt, "nowhere"), OPS)).rejects.toThrow(
      /is not a backup/,
    );
    expect(await snapshot(acme.id)).toEqual(acmeBefore);
  });

  it("includes the homeserver's SQLite database and restores it only while the homeserver is stopped", async () => {
    const homeservers = join(t.config.dataDir, "homeservers");
    await mkdir(join(homeservers, "acme"), { recursive: true });
    const live = join(homeservers, "acme", "homeserver.db");
    const sqlite = new DatabaseSync(live);
    sqlite.exec("create table users (name text); insert into users values ('@alice:acme')");
    let stopped = false;
    const full = new TenantBackups({
      db: t.app.database.knex,
      backupsDir: join(t.config.dataDir, "backups-full"),
      schedule: { intervalHours: 6, retain: 2 },
      log: t.app.log,
      homeserverDatabase: sqliteHomeserverDatabases(homeservers),
      homeserverStopped: () => Promise.resolve(stopped),
    });
    const made = await full.create(acme);
    const manifest = JSON.parse(await readFile(join(made.path, MANIFEST_FILE), "utf8")) as {
      files: { name: string; kind: string; format: string }[];
    };
    expect(manifest.files.map((f) => [f.name, f.kind, f.format])).toEqual([
      [DATA_FILE, "switchboard-data", "json"],
      ["homeserver.db", "homeserver-database", "sqlite"],
    ]);
    sqlite.exec("delete from users");
    sqlite.close();
    const auditBefore = (await snapshot(acme.id)).audit_log;
    await expect(full.restore(acme, made.path, OPS, { homeserverDatabase: true })).rejects.toThrow(
      /homeserver is running: suspend the tenant/,
    );
    expect((await snapshot(acme.id)).audit_log).toEqual(auditBefore);
    stopped = true;
    const result = await full.restore(acme, made.path, OPS, { homeserverDatabase: true });
    expect(result.homeserverDatabase).toBe(true);
    const reopened = new DatabaseSync(live, { readOnly: true });
    expect(reopened.prepare("select name from users").all()).toEqual([{ name: "@alice:acme" }]);
    reopened.close();
  });

  it("schedules due tenants and prunes beyond the retained count", async () => {
    const now = new Date();
    const earlier = await backups.list(acme.id);
    expect(earlier.length).toBeGreaterThan(2);
    // acme has recent backups; other has none.
    expect(await backups.runDue(now)).toEqual(["other"]);
    expect(await backups.runDue(now)).toEqual([]);
    // Seven hours on, both are due again; each keeps its newest two completed backups.
    expect(await backups.runDue(new Date(now.getTime() + 7 * HOURS_MS))).toEqual(["acme", "other"]);
    const kept = await backups.list(acme.id);
    expect(kept.map((b) => b.status)).toEqual(["completed", "completed"]);
    const keptPaths = new Set(kept.map((b) => b.path));
    for (const b of earlier) {
      const exists = await stat(b.path).then(
        () => true,
        () => false,
      );
      expect(exists, b.path).toBe(keptPaths.has(b.path));
    }
    // The copy an earlier test made is recorded by no backup: removed as an orphan.
    const dirs = await readdir(join(t.config.dataDir, "backups", "acme"));
    expect(dirs.sort()).toEqual(
      kept
        .filter((b) => b.path.includes(join("backups", "acme")))
        .map((b) => b.path.split("/").at(-1))
        .sort(),
    );
    expect(await backups.list(other.id)).toHaveLength(2);
    const latest = await backups.latestPerTenant();
    expect(latest.get(acme.id)?.id).toBe(kept[0]?.id);
  });

  it("removes a purged tenant's backups with it", async () => {
    const gone = await seedTenant(t, "gone");
    const made = await backups.create(gone);
    await tenantDeletion.schedule(t.app.database.knex, gone.id, 0, OPS);
    expect(await tenantDeletion.purgeDue(t.app.database.knex, new Date(Date.now() + 1000))).toEqual(
      [{ slug: "gone", serverName: "gone.example.test" }],
    );
    await backups.runDue();
    await expect(stat(made.path)).rejects.toThrow();
    await expect(stat(join(t.config.dataDir, "backups", "gone"))).rejects.toThrow();
    // Everyone else's backups are untouched.
    for (const b of await backups.list(acme.id))
      expect((await stat(b.path)).isDirectory()).toBe(true);
  });
});
