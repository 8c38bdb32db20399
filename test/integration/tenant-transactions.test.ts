import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateToLatest } from "../../src/db/migrate.ts";
import { withSystemTransaction, withTenant } from "../../src/db/tenant-transaction.ts";
import { AppError } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

const GUARD_MESSAGE =
  "database handle used inside a transaction: use the transaction's trx instead";

interface AgentRow {
  tenant_id: string;
  name: string;
}

describe.each(BACKENDS)("tenant transactions on %s", (kind) => {
  let database: TestDatabase;
  let tenantA: TenantId;
  let tenantB: TenantId;

  const insertTenant = async (slug: string): Promise<TenantId> =>
    (await seedTenant(database.knex, slug)).tenantId;

  function agentRow(tenantId: TenantId, name: string): Record<string, unknown> {
    return {
      tenant_id: tenantId,
      name,
      display_name: name,
      provider: "openai",
      model: "gpt-4o-mini",
    };
  }

  async function agentNamesOf(tenantId: TenantId): Promise<string[]> {
    const rows: AgentRow[] = await database
      .knex("agents")
      .where({ tenant_id: tenantId })
      .orderBy("name")
      .select("name");
    return rows.map((row) => row.name);
  }

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    // The service connection (table owner) writes across tenants.
    tenantA = await insertTenant("tenant-a");
    tenantB = await insertTenant("tenant-b");
    await database
      .knex("agents")
      .insert([agentRow(tenantA, "ada"), agentRow(tenantA, "alan"), agentRow(tenantB, "bob")]);
  });

  afterAll(async () => {
    await database.drop();
  });

  it("withTenant sees only its own tenant's rows", async () => {
    const seenByA = await withTenant<AgentRow[]>(database.knex, tenantA, (trx) =>
      trx("agents").orderBy("name").select("tenant_id", "name"),
    );
    expect(seenByA).toEqual([
      { tenant_id: tenantA, name: "ada" },
      { tenant_id: tenantA, name: "alan" },
    ]);

    const seenByB = await withTenant<AgentRow[]>(database.knex, tenantB, (trx) =>
      trx("agents").select("tenant_id", "name"),
    );
    expect(seenByB).toEqual([{ tenant_id: tenantB, name: "bob" }]);
  });

  it("asking for another tenant's rows explicitly still returns nothing", async () => {
    const rows = await withTenant<AgentRow[]>(database.knex, tenantA, (trx) =>
      trx("agents").where({ tenant_id: tenantB }).select("name"),
    );
    expect(rows).toEqual([]);
    const tenants = await withTenant<{ id: string }[]>(database.knex, tenantA, (trx) =>
      trx("tenants").select("id"),
    );
    expect(tenants).toEqual([{ id: tenantA }]);
  });

  it("cannot insert a row for another tenant, and nothing is written", async () => {
    const attempt = withTenant(database.knex, tenantA, (trx) =>
      trx("agents").insert(agentRow(tenantB, "intruder")),
    );
    await expect(attempt).rejects.toThrow(/row-level security/);
    expect(await agentNamesOf(tenantB)).toEqual(["bob"]);
  });

  it("cannot move its own row to another tenant or change another tenant's rows", async () => {
    await expect(
      withTenant(database.knex, tenantA, (trx) =>
        trx("agents").where({ name: "ada" }).update({ tenant_id: tenantB }),
      ),
    ).rejects.toThrow(/row-level security/);
    const updated = await withTenant(database.knex, tenantA, (trx) =>
      trx("agents").where({ name: "bob" }).update({ display_name: "Hijacked" }),
    );
    expect(updated).toBe(0);
    const deleted = await withTenant(database.knex, tenantA, (trx) =>
      trx("agents").where({ tenant_id: tenantB }).delete(),
    );
    expect(deleted).toBe(0);
    expect(await agentNamesOf(tenantA)).toEqual(["ada", "alan"]);
    const [bob]: { display_name: string }[] = await database
      .knex("agents")
      .where({ name: "bob" })
      .select("display_name");
    expect(bob?.display_name).toBe("bob");
  });

  it("commits its own writes", async () => {
    await withTenant(database.knex, tenantB, (trx) =>
      trx("agents").insert(agentRow(tenantB, "bea")),
    );
    expect(await agentNamesOf(tenantB)).toEqual(["bea", "bob"]);
  });

  it("rolls back when the work throws", async () => {
    await expect(
      withTenant(database.knex, tenantA, async (trx) => {
        await trx("agents").insert(agentRow(tenantA, "temporary"));
        throw new Error("work failed");
      }),
    ).rejects.toThrow("work failed");
    expect(await agentNamesOf(tenantA)).toEqual(["ada", "alan"]);
  });

  it("using the root handle inside withTenant fails at once and rolls the transaction back", async () => {
    const started = performance.now();
    let thrown: unknown;
    try {
      await withTenant(database.knex, tenantA, async (trx) => {
        await trx("agents").insert(agentRow(tenantA, "rolled-back"));
        await database.knex("agents").select("name");
      });
    } catch (error) {
      thrown = error;
    }
    const elapsedMs = performance.now() - started;
    expect(thrown).toBeInstanceOf(AppError);
    expect((thrown as AppError).message).toBe(GUARD_MESSAGE);
    expect(elapsedMs).toBeLessThan(5_000);
    expect(await agentNamesOf(tenantA)).toEqual(["ada", "alan"]);
  });

  it("the same guard applies inside withSystemTransaction", async () => {
    const started = performance.now();
    await expect(
      withSystemTransaction(database.knex, async (trx) => {
        await trx("tenants").insert({ slug: "never-stored", name: "x" });
        await database.knex("tenants").count();
      }),
    ).rejects.toThrow(GUARD_MESSAGE);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await database.knex("tenants").where({ slug: "never-stored" })).toEqual([]);
  });

  it("the tenant scope ends with the transaction", async () => {
    await withTenant(database.knex, tenantA, (trx) => trx("agents").select());
    // Back on the service connection, every tenant's rows are visible again.
    const rows: AgentRow[] = await database.knex("agents").select("tenant_id");
    expect(new Set(rows.map((row) => row.tenant_id))).toEqual(new Set([tenantA, tenantB]));
    const result: { rows: { tenant: string | null }[] } = await database.knex.raw(
      "select current_setting('app.tenant_id', true) as tenant",
    );
    const [setting] = result.rows;
    expect(setting?.tenant ?? "").toBe("");
  });

  it("transactions of different tenants can run at the same time", async () => {
    const [a, b] = await Promise.all([
      withTenant(database.knex, tenantA, (trx) => trx("agents").select("name")),
      withTenant(database.knex, tenantB, (trx) => trx("agents").select("name")),
    ]);
    expect((a as AgentRow[]).map((row) => row.name).sort()).toEqual(["ada", "alan"]);
    expect((b as AgentRow[]).map((row) => row.name).sort()).toEqual(["bea", "bob"]);
  });

  it("running the migrations again changes nothing", async () => {
    expect(await migrateToLatest(database.knex)).toEqual([]);
    expect(await migrateToLatest(database.knex)).toEqual([]);
    expect(await agentNamesOf(tenantA)).toEqual(["ada", "alan"]);
    // Row-level security is still in force after the re-run.
    const rows = await withTenant<AgentRow[]>(database.knex, tenantB, (trx) =>
      trx("agents").select("name"),
    );
    expect(rows.map((row) => row.name).sort()).toEqual(["bea", "bob"]);
  });
});
