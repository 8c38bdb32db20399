import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI_RUN_TIMEOUT_MS, runCli } from "../support/cli.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { connectDatabase } from "../../src/db/connect.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { seedTenant, signedInOperator } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const OPS: Actor = { id: "operator", via: "cli" };

describe("plan changes", () => {
  let t: PortalTest;
  let owner: Browser;
  let shrink: { id: TenantId; slug: string };

  const statuses = async (id: TenantId): Promise<Record<string, string>> =>
    Object.fromEntries(
      (
        (await t.app.database.knex("agents").where({ tenant_id: id }).select("name", "status")) as {
          name: string;
          status: string;
        }[]
      ).map((row) => [row.name, row.status]),
    );

  beforeAll(async () => {
    t = await startPortalTest();
    owner = await t.signedIn("owner@example.org");
    shrink = await seedTenant(t, "shrink", [{ browser: owner, role: "owner" }]);
  });
  afterAll(async () => {
    await t.stop();
  });

  it("an upgrade pauses nothing; a downgrade pauses the newest extra agents, audits and mails the owners", async () => {
    expect(await t.app.planChanges.apply(shrink.id, "pro", OPS)).toEqual({
      pausedAgents: [],
      changed: true,
      from: "free",
      to: "pro",
    });
    for (const name of ["first", "second", "third", "fourth"])
      await t.app.agents.create(shrink.id, { name }, OPS);
    await t.app.agents.update(shrink.id, "third", { status: "paused" }, OPS);

    const down = await t.app.planChanges.apply(shrink.id, "free", OPS);
    // Active were first, second, fourth: the newest two go.
    expect(down.pausedAgents).toEqual(["fourth", "second"]);
    expect(await statuses(shrink.id)).toEqual({
      first: "active",
      second: "paused",
      third: "paused",
      fourth: "paused",
    });
    const audit = (await t.app.database
      .knex("audit_log")
      .where({ tenant_id: shrink.id })
      .whereIn("action", ["agent.pause", "tenant.plan"])
      .orderBy("id")
      .select("action", "target")) as { action: string; target: string }[];
    expect(audit.slice(-3)).toEqual([
      { action: "agent.pause", target: "fourth" },
      { action: "agent.pause", target: "second" },
      { action: "tenant.plan", target: "shrink" },
    ]);
    const mail = await t.lastMailTo("owner@example.org");
    expect(mail.subject).toBe("Tenant shrink: 2 agents paused by the plan change");
    expect(mail.text).toContain("now on the Free plan, which allows 1 active agent");
    expect(mail.text).toContain("  - fourth\n  - second\n");
    expect(mail.link).toMatch(/\/t\/shrink\/agents$/);

    // Upgrading again does not bring them back by itself; nothing is paused.
    expect((await t.app.planChanges.apply(shrink.id, "pro", OPS)).pausedAgents).toEqual([]);
    expect((await statuses(shrink.id))["second"]).toBe("paused");
    expect((await t.app.planChanges.apply(shrink.id, "pro", OPS)).changed).toBe(false);
  });

  it("refuses an unknown plan (400, naming the plans) and an unknown tenant (404)", async () => {
    await expect(t.app.planChanges.apply(shrink.id, "gold", OPS)).rejects.toMatchObject({
      code: "bad_request",
      message: "plan: must be one of free, starter, pro, enterprise",
    });
    await expect(
      t.app.planChanges.apply("00000000-0000-4000-8000-000000000000", "free", OPS),
    ).rejects.toMatchObject({ code: "not_found" });
    await expect(t.app.planChanges.apply("nope", "free", OPS)).rejects.toMatchObject({
      code: "not_found",
    });
  });

  it("operators assign plans in the admin area through the same path", async () => {
    const ops = await signedInOperator(t, "ops@example.org");
    await t.app.agents.update(shrink.id, "second", { status: "active" }, OPS);
    const response = await ops.request(`/api/v1/admin/tenants/${shrink.id}/plan`, {
      method: "PUT",
      json: { plan: "free" },
    });
    expect(response.statusCode).toBe(200);
    expect((await statuses(shrink.id))["second"]).toBe("paused");
  });
});

describe("switchboard tenant plan", () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "switchboard-cli-plan-"));
    config = join(dir, "config.yaml");
    await writeFile(config, `dataDir: ${JSON.stringify(dir)}\nlog:\n  level: error\n`);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    "assigns a plan from config.plans, refuses unknown plans and tenants",
    async () => {
      const created = await runCli([
        "-c",
        config,
        "tenant",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme",
        "--server-name",
        "acme.test",
        "--homeserver-url",
        "http://127.0.0.1:9",
      ]);
      expect(created.code, created.output).toBe(0);
      const assigned = await runCli([
        "-c",
        config,
        "tenant",
        "plan",
        "--tenant",
        "acme",
        "--plan",
        "pro",
      ]);
      expect(assigned.code, assigned.output).toBe(0);
      expect(assigned.output).toContain("acme: plan free -> pro\n");
      const bad = await runCli([
        "-c",
        config,
        "tenant",
        "plan",
        "--tenant",
        "acme",
        "--plan",
        "gold",
      ]);
      expect(bad.code).not.toBe(0);
      expect(bad.output).toContain("plan: must be one of free, starter, pro, enterprise");
      const ghost = await runCli([
        "-c",
        config,
        "tenant",
        "plan",
        "--tenant",
        "ghost",
        "--plan",
        "pro",
      ]);
      expect(ghost.code).not.toBe(0);
      expect(ghost.output).toContain('tenant "ghost" not found');

      const database = await connectDatabase({ pgliteDir: join(dir, "pglite") });
      try {
        const row = (await database.knex("tenants").where({ slug: "acme" }).first("plan")) as {
          plan: string;
        };
        expect(row.plan).toBe("pro");
      } finally {
        await database.close();
      }
    },
    4 * CLI_RUN_TIMEOUT_MS,
  );
});
