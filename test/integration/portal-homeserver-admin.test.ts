import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const PASSWORD = "generated-admin-password-123";

describe("the homeserver's bootstrap admin password, shown once", () => {
  let t: PortalTest;
  let owner: Browser;
  let admin: Browser;
  let stranger: Browser;
  let acme: { id: TenantId; slug: string };

  /** The provisioner's record after (or before) bootstrapping the homeserver. */
  const provisioned = async (tenantId: TenantId, bootstrapped: boolean): Promise<void> => {
    await t.app.database.knex("provisioning").insert({
      tenant_id: tenantId,
      driver: "local",
      registration_shared_secret_encrypted: t.app.cipher.encrypt("shared-secret"),
      admin_user_id: "@admin:acme.example.test",
      admin_password_encrypted: t.app.cipher.encrypt(PASSWORD),
      bootstrapped_at: bootstrapped ? new Date() : null,
    });
  };
  const stored = async (tenantId: TenantId) =>
    (
      (await t.app.database
        .knex("provisioning")
        .where({ tenant_id: tenantId })
        .first("admin_password_encrypted")) as { admin_password_encrypted: string | null }
    ).admin_password_encrypted;

  beforeAll(async () => {
    t = await startPortalTest();
    owner = await t.signedIn("owner@example.org");
    admin = await t.signedIn("admin@example.org");
    stranger = await t.signedIn("stranger@example.org");
    acme = await seedTenant(t, "acme", [
      { browser: owner, role: "owner" },
      { browser: admin, role: "admin" },
    ]);
    await provisioned(acme.id, true);
  });
  afterAll(async () => {
    await t.stop();
  });

  it("is offered to owners only, refused to admins and hidden from strangers", async () => {
    expect((await owner.request("/t/acme")).body).toContain("Show its password once");
    expect((await admin.request("/t/acme")).body).not.toContain("Show its password once");
    const byAdmin = await admin.request("/t/acme/homeserver-admin", { form: {} });
    expect(byAdmin.statusCode).toBe(403);
    const byStranger = await stranger.request(
      `/api/v1/tenants/${acme.id}/homeserver-admin/password`,
      { method: "POST" },
    );
    expect(byStranger.statusCode).toBe(404);
    const forged = await owner.request("/t/acme/homeserver-admin", { form: {}, csrf: false });
    expect(forged.statusCode).toBe(403);
    expect(await stored(acme.id)).not.toBeNull();
  });

  it("shows the password once on the page, erases it, and says so afterwards", async () => {
    const shown = await owner.request("/t/acme/homeserver-admin", { form: {} });
    expect(shown.statusCode).toBe(200);
    expect(shown.body).toContain(PASSWORD);
    expect(shown.headers["cache-control"]).toBe("no-store");
    expect(await stored(acme.id)).toBeNull();

    const again = await owner.request("/t/acme/homeserver-admin", { form: {} });
    expect(again.statusCode).toBe(410);
    expect(again.body).not.toContain(PASSWORD);
    expect((await owner.request("/t/acme")).body).toContain("no longer kept here");
    const api = await owner.request(`/api/v1/tenants/${acme.id}/homeserver-admin/password`, {
      method: "POST",
    });
    expect(api.statusCode).toBe(410);
    const audit = await owner.request(`/api/v1/tenants/${acme.id}/audit`);
    expect(audit.body).toContain("homeserver.admin_password_shown");
    expect(audit.body).not.toContain(PASSWORD);
  });

  it("does the same over the API, and waits for the bootstrap", async () => {
    const beta = await seedTenant(t, "beta", [{ browser: owner, role: "owner" }]);
    await provisioned(beta.id, false);
    const early = await owner.request(`/api/v1/tenants/${beta.id}/homeserver-admin/password`, {
      method: "POST",
    });
    expect(early.statusCode).toBe(409);
    expect((await owner.request(`/api/v1/tenants/${beta.id}/homeserver-admin`)).statusCode).toBe(
      404,
    );
    await t.app.database
      .knex("provisioning")
      .where({ tenant_id: beta.id })
      .update({ bootstrapped_at: new Date() });
    const info = await owner.request(`/api/v1/tenants/${beta.id}/homeserver-admin`);
    expect(info.json()).toEqual({ userId: "@admin:acme.example.test", passwordWaiting: true });
    const revealed = await owner.request(`/api/v1/tenants/${beta.id}/homeserver-admin/password`, {
      method: "POST",
    });
    expect(revealed.statusCode).toBe(200);
    expect(revealed.json()).toEqual({ userId: "@admin:acme.example.test", password: PASSWORD });
    const second = await owner.request(`/api/v1/tenants/${beta.id}/homeserver-admin/password`, {
      method: "POST",
    });
    expect(second.statusCode).toBe(410);
    expect((second.json() as { error: { message: string } }).error.message).toMatch(
      /shown once already/,
    );
  });
});
