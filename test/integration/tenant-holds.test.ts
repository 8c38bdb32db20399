import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/audit/audit-log.ts";
import { withSystemTransaction, withTenant } from "../../src/db/tenant-transaction.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { HOLD_REASONS, tenantHolds, type HoldReason } from "../../src/tenants/holds.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type PortalTest } from "../support/portal.ts";

const OPS: Actor = { id: "ops@example.org", via: "cli" };

/** Every non-empty subset of the reasons, in every order placements could come in. */
function permutations(items: readonly HoldReason[]): HoldReason[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}
const SUBSETS: HoldReason[][] = Array.from(
  { length: 2 ** HOLD_REASONS.length - 1 },
  (_, i) => i + 1,
).map((mask) => HOLD_REASONS.filter((_, bit) => (mask & (1 << bit)) !== 0));

describe.each(BACKENDS)("tenant holds (%s)", (backend) => {
  let t: PortalTest;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };

  const status = async (id: TenantId): Promise<string> =>
    ((await t.app.database.knex("tenants").where({ id }).first("status")) as { status: string })
      .status;
  const place = (id: TenantId, reason: HoldReason) =>
    withTenant(t.app.database.knex, id, (trx) => tenantHolds.place(trx, id, reason, OPS));
  const lift = (id: TenantId, reason: HoldReason) =>
    withTenant(t.app.database.knex, id, (trx) => tenantHolds.lift(trx, id, reason, OPS));

  beforeAll(async () => {
    t = await startPortalTest({ database: backend });
    acme = await seedTenant(t, "acme");
    other = await seedTenant(t, "other");
  });
  afterAll(async () => {
    await t.stop();
  });

  it("covers all seven combinations of reasons", () => {
    expect(SUBSETS).toHaveLength(7);
  });

  it("suspends while any hold remains, whatever the order of placing and lifting", async () => {
    for (const subset of SUBSETS) {
      for (const order of permutations(subset)) {
        for (const reason of order) {
          expect(await place(acme.id, reason)).toBe(true);
          expect(await status(acme.id)).toBe("suspended");
        }
        // Lifting in placement order: each lift but the last leaves the tenant suspended.
        for (const [i, reason] of order.entries()) {
          expect(await lift(acme.id, reason)).toBe(true);
          expect(await status(acme.id)).toBe(i === order.length - 1 ? "active" : "suspended");
        }
      }
    }
    expect(await status(other.id)).toBe("active");
  });

  it("placing a hold twice or lifting an absent one changes nothing and audits nothing", async () => {
    const audited = async () =>
      Number(
        (
          (await t.app.database
            .knex("audit_log")
            .where({ tenant_id: acme.id })
            .count({ n: "*" })
            .first()) as { n: string | number }
        ).n,
      );
    expect(await lift(acme.id, "billing")).toBe(false);
    expect(await place(acme.id, "billing")).toBe(true);
    const before = await audited();
    const [placed] = await withTenant(t.app.database.knex, acme.id, (trx) => tenantHolds.list(trx));
    const since = placed?.since;
    expect(await place(acme.id, "billing")).toBe(false);
    expect(await audited()).toBe(before);
    const holds = await withTenant(t.app.database.knex, acme.id, (trx) => tenantHolds.list(trx));
    expect(holds).toEqual([{ tenantId: acme.id, reason: "billing", since }]);
    expect(await lift(acme.id, "billing")).toBe(true);
    expect(await lift(acme.id, "billing")).toBe(false);
    expect(await audited()).toBe(before + 1);
    expect(await status(acme.id)).toBe("active");
  });

  it("audits each change with its reason and the status it leaves", async () => {
    await place(acme.id, "operator");
    await place(acme.id, "deletion");
    await lift(acme.id, "operator");
    await lift(acme.id, "deletion");
    const entries = (await t.app.database
      .knex("audit_log")
      .where({ tenant_id: acme.id })
      .orderBy("id", "desc")
      .limit(4)
      .select("action", "actor", "target", "details")) as {
      action: string;
      details: Record<string, unknown> | string;
    }[];
    const parsed = entries.reverse().map((entry) => ({
      ...entry,
      details: typeof entry.details === "string" ? JSON.parse(entry.details) : entry.details,
    }));
    expect(parsed).toEqual([
      {
        action: "tenant.hold",
        actor: OPS.id,
        target: "acme",
        details: { reason: "operator", status: "suspended" },
      },
      {
        action: "tenant.hold",
        actor: OPS.id,
        target: "acme",
        details: { reason: "deletion", status: "suspended" },
      },
      {
        action: "tenant.release",
        actor: OPS.id,
        target: "acme",
        details: { reason: "operator", status: "suspended" },
      },
      {
        action: "tenant.release",
        actor: OPS.id,
        target: "acme",
        details: { reason: "deletion", status: "active" },
      },
    ]);
  });

  it("a tenant never provisioned goes back to provisioning, and becomes active once provisioned", async () => {
    await t.app.database.knex("tenants").where({ id: other.id }).update({
      status: "provisioning",
      provisioned_at: null,
    });
    await place(other.id, "billing");
    expect(await status(other.id)).toBe("suspended");
    await lift(other.id, "billing");
    expect(await status(other.id)).toBe("provisioning");
    await place(other.id, "operator");
    expect(
      await withSystemTransaction(t.app.database.knex, (trx) =>
        tenantHolds.markProvisioned(trx, other.id),
      ),
    ).toBe("suspended");
    await lift(other.id, "operator");
    expect(await status(other.id)).toBe("active");
  });

  it("keeps holds in their tenant: row-level security hides and refuses the other tenant's", async () => {
    await place(other.id, "operator");
    const seen = await withTenant(t.app.database.knex, acme.id, (trx) => tenantHolds.list(trx));
    expect(seen.map((hold) => hold.tenantId)).not.toContain(other.id);
    // Acme's transaction cannot place or lift a hold on the other tenant (its row is invisible).
    await expect(
      withTenant(t.app.database.knex, acme.id, (trx) =>
        tenantHolds.lift(trx, other.id, "operator", OPS),
      ),
    ).rejects.toMatchObject({ code: "not_found" });
    expect(await status(other.id)).toBe("suspended");
    const all = await withSystemTransaction(t.app.database.knex, (trx) =>
      tenantHolds.list(trx, other.id),
    );
    expect(all.map((hold) => hold.reason)).toEqual(["operator"]);
    await lift(other.id, "operator");
  });

  it("an unknown tenant is not found", async () => {
    const ghost = "00000000-0000-4000-8000-000000000000" as TenantId;
    await expect(
      withSystemTransaction(t.app.database.knex, (trx) =>
        tenantHolds.place(trx, ghost, "operator", OPS),
      ),
    ).rejects.toMatchObject({ code: "not_found" });
  });
});
