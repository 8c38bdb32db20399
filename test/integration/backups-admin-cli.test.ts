import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.ts";
import { createApp, type App } from "../../src/main.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { databaseHealthStore } from "../../src/provisioning/health-store.ts";
import { HEALTHY } from "../../src/provisioning/health.ts";
import { CLI_RUN_TIMEOUT_MS, runCli } from "../support/cli.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant, signedInOperator } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
import type { TenantId } from "../../src/shared/ids.ts";

describe.each(BACKENDS)("backups and health in the admin area (%s)", (backend) => {
  let t: PortalTest;
  let operator: Browser;
  let acme: { id: TenantId; slug: string };

  beforeAll(async () => {
    t = await startPortalTest({ database: backend });
    operator = await signedInOperator(t, "ops@example.org");
    acme = await seedTenant(t, "acme");
  });
  afterAll(async () => {
    await t.stop();
  });

  it("backs up from the tenant page and shows the last backup on both admin pages", async () => {
    expect((await operator.request("/admin")).body).toContain("never");
    const response = await operator.request(`/admin/tenants/${acme.id}/backup`, { form: {} });
    expect(response.statusCode).toBe(303);
    const [made] = await t.app.backups.list(acme.id);
    expect(made?.status).toBe("completed");
    const list = (await operator.request("/admin")).body;
    expect(list).toContain(made?.createdAt.toISOString().slice(0, 16).replace("T", " "));
    const page = (await operator.request(`/admin/tenants/${acme.id}`)).body;
    expect(page).toContain("Back up now");
    expect(page).toContain(`${String(made?.bytes)} bytes`);
    // Strangers to the admin area see nothing and change nothing.
    const member = await t.signedIn("member@example.org");
    const refused = await member.request(`/admin/tenants/${acme.id}/backup`, { form: {} });
    expect(refused.statusCode).toBe(404);
    expect(await t.app.backups.list(acme.id)).toHaveLength(1);
  });

  it("shows a degraded homeserver in the admin area and the tenant overview until it recovers", async () => {
    const owner = await t.signedIn("owner@example.org");
    const beta = await seedTenant(t, "beta", [{ browser: owner, role: "owner" }]);
    const store = databaseHealthStore(t.app.database.knex, t.app.tenantRepository);
    await store.write(beta.id, {
      ...HEALTHY,
      status: "degraded",
      consecutiveFailures: 3,
      lastError: "GET /health did not answer 200",
    });
    expect(await store.countDegraded()).toBe(1);
    expect((await store.read(beta.id)).consecutiveFailures).toBe(3);
    expect((await operator.request("/admin")).body).toContain("degraded");
    expect((await operator.request(`/admin/tenants/${beta.id}`)).body).toContain(
      "3 failed checks in a row",
    );
    expect((await owner.request("/t/beta")).body).toContain("<strong>degraded</strong>");
    await store.write(beta.id, { ...HEALTHY, lastCheckedAt: new Date() });
    expect((await owner.request("/t/beta")).body).not.toContain("<strong>degraded</strong>");
    expect((await operator.request("/admin")).body).not.toContain(">degraded<");
    // Seeded tenants have no provisioning row: the monitor does not watch them.
    expect(await store.targets()).toEqual([]);
  });
});

describe("switchboard backup (the real CLI)", () => {
  let dir: string;
  let config: string;
  let tenantId: TenantId;

  /** The CLI's database is PGlite in dataDir: open it only between CLI runs. */
  async function withCliApp<T>(task: (app: App) => Promise<T>): Promise<T> {
    const app = await createApp(await loadConfig(config));
    try {
      return await task(app);
    } finally {
      await app.close();
    }
  }
  const facts = (app: App) =>
    withTenant(app.database.knex, tenantId, async (trx) =>
      ((await trx("facts").orderBy("content").select("content")) as { content: string }[]).map(
        (row) => row.content,
      ),
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "switchboard-backup-cli-"));
    config = join(dir, "config.yaml");
    await writeFile(config, `dataDir: ${JSON.stringify(dir)}\nlog:\n  level: error\n`);
    tenantId = await withCliApp(async (app) => {
      const { tenant } = await app.tenants.create({
        slug: "acme",
        name: "Acme",
        serverName: "acme.example.test",
        homeserverUrl: "http://127.0.0.1:9/",
      });
      await app.tenants.create({
        slug: "other",
        name: "Other",
        serverName: "other.example.test",
        homeserverUrl: "http://127.0.0.1:9/",
      });
      await withTenant(app.database.knex, tenant.id, (trx) =>
        trx("facts").insert({
          tenant_id: tenant.id,
          subject_kind: "tenant",
          content: "The office opens at nine",
          source_kind: "admin",
        }),
      );
      return tenant.id;
    });
  }, CLI_RUN_TIMEOUT_MS);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    "creates, lists and restores a backup; refuses another tenant's with nothing written",
    async () => {
      const created = await runCli(["-c", config, "backup", "create", "--tenant", "acme"]);
      expect(created.stderr).not.toContain("switchboard:");
      expect(created.code).toBe(0);
      const path = /backed up acme: (\S+) \(\d+ bytes\)/.exec(created.stdout)?.[1] ?? "";
      expect(path).toContain(join(dir, "backups", "acme"));

      const listed = await runCli(["-c", config, "backup", "list", "--tenant", "acme"]);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toContain(`completed`);
      expect(listed.stdout).toContain(path);

      await withCliApp((app) =>
        withTenant(app.database.knex, tenantId, (trx) => trx("facts").delete()),
      );
      const refused = await runCli([
        "-c",
        config,
        "backup",
        "restore",
        "--tenant",
        "other",
        "--from",
        path,
      ]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("this backup belongs to tenant acme");
      expect(await withCliApp(facts)).toEqual([]);

      const restored = await runCli([
        "-c",
        config,
        "backup",
        "restore",
        "--tenant",
        "acme",
        "--from",
        path,
      ]);
      expect(restored.stderr).not.toContain("switchboard:");
      expect(restored.code).toBe(0);
      expect(restored.stdout).toContain("restored acme");
      expect(await withCliApp(facts)).toEqual(["The office opens at nine"]);
      const audit = await withCliApp((app) =>
        withTenant(app.database.knex, tenantId, (trx) =>
          trx("audit_log").where({ action: "tenant.backup_restore" }).select("actor"),
        ),
      );
      expect(audit).toEqual([{ actor: "operator" }]);
    },
    5 * CLI_RUN_TIMEOUT_MS,
  );
});
