import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import { withSystemTransaction } from "../../src/db/tenant-transaction.ts";
import { tenantDeletion } from "../../src/tenants/deletion.ts";
import { tenantHolds } from "../../src/tenants/holds.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant, signedInOperator } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const DAY_MS = 86_400_000;

describe.each(BACKENDS)("tenant deletion (%s)", (backend) => {
  let t: PortalTest;
  let owner: Browser;
  let admin: Browser;
  let stranger: Browser;
  let operator: Browser;
  let acme: { id: TenantId; slug: string };
  let other: { id: TenantId; slug: string };

  const row = async (id: TenantId) =>
    (await t.app.database.knex("tenants").where({ id }).first()) as
      { status: string; delete_after: Date | null } | undefined;

  beforeAll(async () => {
    t = await startPortalTest({
      database: backend,
      config: { portal: { deletionRetentionDays: 7 } },
    });
    owner = await t.signedIn("owner@example.org");
    admin = await t.signedIn("admin@example.org");
    stranger = await t.signedIn("stranger@example.org");
    operator = await signedInOperator(t, "operator@example.org");
    acme = await seedTenant(t, "acme", [
      { browser: owner, role: "owner" },
      { browser: admin, role: "admin" },
    ]);
    other = await seedTenant(t, "other", [{ browser: stranger, role: "owner" }]);
    await t.app.agents.create(acme.id, { name: "ada" }, { id: "test", via: "cli" });
  });
  afterAll(async () => {
    await t.stop();
  });

  it("shows the retention notice to owners only", async () => {
    const page = await owner.request("/t/acme/settings");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("7 days");
    expect(page.body).toContain("Delete this tenant");
    const asAdmin = await admin.request("/t/acme/settings");
    expect(asAdmin.body).not.toContain('action="/t/acme/settings/delete"');
    expect((await stranger.request("/t/acme/settings")).statusCode).toBe(404);
  });

  it("refuses a wrong or missing slug, admins, strangers, tokens and forged forms; nothing changes", async () => {
    const wrong = await owner.request("/t/acme/settings/delete", { form: { confirm: "acne" } });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.body).toContain("is not this tenant&#39;s slug");
    expect((await owner.request("/t/acme/settings/delete", { form: {} })).statusCode).toBe(400);
    expect(
      (await owner.request("/t/acme/settings/delete", { form: { confirm: "acme" }, csrf: false }))
        .statusCode,
    ).toBe(403);
    expect(
      (await admin.request("/t/acme/settings/delete", { form: { confirm: "acme" } })).statusCode,
    ).toBe(403);
    expect(
      (await stranger.request("/t/acme/settings/delete", { form: { confirm: "acme" } })).statusCode,
    ).toBe(404);
    const api = `/api/v1/tenants/${acme.id}`;
    expect((await owner.request(api, { method: "DELETE" })).statusCode).toBe(400);
    expect((await admin.request(`${api}?confirm=acme`, { method: "DELETE" })).statusCode).toBe(403);
    expect((await stranger.request(`${api}?confirm=acme`, { method: "DELETE" })).statusCode).toBe(
      404,
    );
    expect(
      (await stranger.request(`/api/v1/tenants/${other.id}x?confirm=acme`, { method: "DELETE" }))
        .statusCode,
    ).toBe(404);
    const anonymous = t.browser();
    await anonymous.csrfToken();
    expect((await anonymous.request(`${api}?confirm=acme`, { method: "DELETE" })).statusCode).toBe(
      401,
    );
    const { plaintext } = await t.app.apiTokens.create(acme.id, { name: "ci" }, null, {
      id: "test",
      via: "cli",
    });
    const byToken = await t.browser().request(`${api}?confirm=acme`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${plaintext}` },
    });
    expect(byToken.statusCode).toBe(403);
    expect(await row(acme.id)).toMatchObject({ status: "active", delete_after: null });
    expect((await owner.request(`${api}/restore`, { method: "POST" })).statusCode).toBe(409);
  });

  it("suspends at once, restores within the retention period, and keeps the data meanwhile", async () => {
    const started = Date.now();
    const deleted = await owner.request("/t/acme/settings/delete", { form: { confirm: "acme" } });
    expect(deleted.statusCode).toBe(303);
    const scheduled = await row(acme.id);
    expect(scheduled?.status).toBe("suspended");
    const deleteAfter = new Date(scheduled?.delete_after ?? 0).getTime();
    expect(deleteAfter).toBeGreaterThanOrEqual(started + 7 * DAY_MS - 1000);
    expect(deleteAfter).toBeLessThanOrEqual(Date.now() + 7 * DAY_MS);
    const page = await owner.request("/t/acme/settings");
    expect(page.body).toContain("Scheduled for deletion");
    expect(
      (await owner.request(`/api/v1/tenants/${acme.id}?confirm=acme`, { method: "DELETE" }))
        .statusCode,
    ).toBe(409);
    expect(await tenantDeletion.purgeDue(t.app.database.knex)).toEqual([]);
    expect(await t.app.agents.list(acme.id)).toHaveLength(1);

    // Admins cannot take it back; strangers do not see it; the owner can.
    expect((await admin.request("/t/acme/settings/restore", { form: {} })).statusCode).toBe(403);
    expect(
      (await stranger.request(`/api/v1/tenants/${acme.id}/restore`, { method: "POST" })).statusCode,
    ).toBe(404);
    const restored = await owner.request(`/api/v1/tenants/${acme.id}/restore`, { method: "POST" });
    expect(restored.statusCode).toBe(200);
    expect(restored.json()).toEqual({ status: "active" });
    expect(await row(acme.id)).toMatchObject({ status: "active", delete_after: null });
  });

  it("lifts only the deletion hold: a tenant an operator suspended stays suspended after a restore", async () => {
    const ops = { id: "ops@example.org", via: "cli" } as const;
    await withSystemTransaction(t.app.database.knex, (trx) =>
      tenantHolds.place(trx, other.id, "operator", ops),
    );
    const deleted = await stranger.request(`/api/v1/tenants/${other.id}?confirm=other`, {
      method: "DELETE",
    });
    expect(deleted.statusCode).toBe(202);
    expect(deleted.json()).toMatchObject({ status: "suspended" });
    // An operator restores without being a member.
    expect((await operator.request("/t/other/settings/restore", { form: {} })).statusCode).toBe(
      404,
    );
    expect(
      (await owner.request(`/admin/tenants/${other.id}/restore`, { form: {} })).statusCode,
    ).toBe(404);
    const restored = await operator.request(`/admin/tenants/${other.id}/restore`, { form: {} });
    expect(restored.statusCode).toBe(303);
    expect(await row(other.id)).toMatchObject({ status: "suspended", delete_after: null });
    const audit = (await t.app.database
      .knex("audit_log")
      .where({ tenant_id: other.id })
      .orderBy("id")
      .select("action", "actor")) as { action: string; actor: string }[];
    // The deletion's hold is lifted; the operator's stays.
    expect(audit).toEqual([
      { action: "tenant.hold", actor: "ops@example.org" },
      { action: "tenant.delete", actor: "stranger@example.org" },
      { action: "tenant.hold", actor: "stranger@example.org" },
      { action: "tenant.release", actor: "operator@example.org" },
      { action: "tenant.restore", actor: "operator@example.org" },
    ]);
  });

  it("erases a tenant and everything it holds once the retention period is over", async () => {
    const deleted = await owner.request(`/api/v1/tenants/${acme.id}?confirm=acme`, {
      method: "DELETE",
    });
    expect(deleted.statusCode).toBe(202);
    const deleteAfter = new Date((deleted.json() as { deleteAfter: string }).deleteAfter);
    const knex = t.app.database.knex;
    expect(await tenantDeletion.purgeDue(knex, new Date(deleteAfter.getTime() - 1000))).toEqual([]);
    expect(await tenantDeletion.purgeDue(knex, new Date(deleteAfter.getTime() + 1000))).toEqual([
      { slug: "acme", serverName: "acme.example.test" },
    ]);
    expect(await row(acme.id)).toBeUndefined();
    for (const table of ["agents", "homeservers", "memberships", "audit_log"])
      expect(await knex(table).where({ tenant_id: acme.id }).first(), table).toBeUndefined();
    expect(await row(other.id)).toBeDefined();
    expect((await owner.request("/t/acme/settings")).statusCode).toBe(404);
    expect(
      (await owner.request(`/api/v1/tenants/${acme.id}/restore`, { method: "POST" })).statusCode,
    ).toBe(404);
  });
});
