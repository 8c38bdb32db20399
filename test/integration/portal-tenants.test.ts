import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/shared/errors.ts";
import { BACKENDS } from "../support/database.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
import {
  bearer,
  createTenant,
  errorOf,
  expireSession,
  rowCounts,
  signedInUnverified,
  tokenFor,
} from "../support/portal-tenants.ts";

describe.each(BACKENDS)("tenants in the portal (%s)", (database) => {
  let t: PortalTest;
  let ada: Browser;
  let bob: Browser;
  beforeAll(async () => {
    t = await startPortalTest({ database });
    ada = await t.signedIn("ada@example.org");
    bob = await t.signedIn("bob@example.org");
  });
  afterAll(async () => {
    await t.stop();
  });

  it("creates a provisioning tenant owned by its creator, with its server name and audit entry", async () => {
    const tenant = await createTenant(ada, "acme");
    expect(tenant).toMatchObject({
      slug: "acme",
      name: "Tenant acme",
      status: "provisioning",
      statusLabel: "provisioning",
      serverName: "acme.example.test",
      homeserverUrl: "https://acme.example.test",
      botUserId: "@switchboard:acme.example.test",
      role: "owner",
    });
    const knex = t.database.knex;
    const member = (await knex("memberships").where({ tenant_id: tenant.id }).first()) as {
      role: string;
    };
    expect(member.role).toBe("owner");
    const audit = (await knex("audit_log").where({ tenant_id: tenant.id })) as {
      action: string;
      actor: string;
      via: string;
    }[];
    expect(audit).toEqual([
      expect.objectContaining({ action: "tenant.create", actor: "ada@example.org", via: "api" }),
    ]);
  });

  it("shows the tenant to its members only; other ids are 404", async () => {
    const tenant = await createTenant(ada, "shown");
    const own = await ada.request(`/api/v1/tenants/${tenant.id}`);
    expect(own.statusCode).toBe(200);
    expect(own.json()).toMatchObject({ planName: "Free", matrixUserId: null });
    for (const url of [
      `/api/v1/tenants/${tenant.id}`,
      "/api/v1/tenants/00000000-0000-4000-8000-000000000000",
      "/api/v1/tenants/not-a-uuid",
    ]) {
      const response = await bob.request(url);
      expect(response.statusCode, url).toBe(404);
      expect(errorOf(response)).toBe("tenant not found");
    }
    expect((await t.browser().request(`/api/v1/tenants/${tenant.id}`)).statusCode).toBe(401);
  });

  it("lists my tenants in pages", async () => {
    const carol = await t.signedIn("carol@example.org");
    for (const slug of ["c-one", "c-two", "c-three"]) await createTenant(carol, slug);
    const first = await carol.request("/api/v1/tenants?limit=2");
    expect(first.statusCode).toBe(200);
    const page1 = first.json() as { items: { slug: string }[]; nextCursor: string | null };
    expect(page1.items.map((item) => item.slug)).toEqual(["c-one", "c-two"]);
    expect(page1.nextCursor).not.toBeNull();
    const second = await carol.request(
      `/api/v1/tenants?limit=2&cursor=${encodeURIComponent(page1.nextCursor ?? "")}`,
    );
    const page2 = second.json() as { items: { slug: string; role: string }[]; nextCursor: null };
    expect(page2.items).toEqual([expect.objectContaining({ slug: "c-three", role: "owner" })]);
    expect(page2.nextCursor).toBeNull();
    // Bob sees none of them.
    expect((await bob.request("/api/v1/tenants")).json()).toEqual({ items: [], nextCursor: null });
    for (const query of ["limit=0", "limit=101", "limit=x", "cursor=bm9wZQ", "cursor=LTE"]) {
      expect((await carol.request(`/api/v1/tenants?${query}`)).statusCode, query).toBe(400);
    }
  });

  it("creates a tenant from the form and shows the overview with how to log in", async () => {
    const form = await ada.request("/tenants/new");
    expect(form.statusCode).toBe(200);
    expect(form.body).toContain(".example.test");
    const created = await ada.request("/tenants/new", {
      form: { name: "Form & Co", slug: "formco" },
    });
    expect(created.statusCode).toBe(303);
    expect(created.headers.location).toBe("/t/formco");
    const page = await ada.request("/t/formco");
    expect(page.statusCode).toBe(200);
    for (const text of [
      "Form &amp; Co",
      "provisioning",
      "Free",
      "https://formco.example.test",
      "formco.example.test",
      "@switchboard:formco.example.test",
      "@ai_&lt;name&gt;:formco.example.test",
      "Element",
      "not linked",
    ])
      expect(page.body).toContain(text);
    expect((await bob.request("/t/formco")).statusCode).toBe(404);
    const anonymous = await t.browser().request("/t/formco");
    expect(anonymous.statusCode).toBe(303);
    expect(anonymous.headers.location).toBe("/login?next=%2Ft%2Fformco");
  });

  it("re-renders the form with the message when the input is refused, writing nothing", async () => {
    const before = await rowCounts(t);
    const badSlug = await ada.request("/tenants/new", { form: { name: "X", slug: "Not Valid" } });
    expect(badSlug.statusCode).toBe(400);
    expect(badSlug.body).toContain("slug: must be 1-32 lowercase letters");
    expect(badSlug.body).toContain('value="Not Valid"');
    const taken = await ada.request("/tenants/new", { form: { name: "X", slug: "acme" } });
    expect(taken.statusCode).toBe(409);
    expect(taken.body).toContain("already exists");
    const forged = await ada.request("/tenants/new", {
      form: { name: "X", slug: "forged" },
      csrf: false,
    });
    expect(forged.statusCode).toBe(403);
    expect(await rowCounts(t)).toEqual(before);
  });

  it("refuses bad API input with a 4xx and writes nothing", async () => {
    const before = await rowCounts(t);
    const cases: [string, unknown, number, RegExp][] = [
      ["missing name", { slug: "x1" }, 400, /name/],
      ["missing slug", { name: "X" }, 400, /slug/],
      ["oversized name", { name: "n".repeat(101), slug: "x2" }, 400, /name/],
      ["oversized slug", { name: "X", slug: "s".repeat(65) }, 400, /slug/],
      ["slug too long for a name", { name: "X", slug: "s".repeat(33) }, 400, /slug/],
      ["blank name", { name: "   ", slug: "x3" }, 400, /name/],
      ["wrong type", { name: "X", slug: 5 }, 400, /slug/],
      ["unknown field", { name: "X", slug: "x4", serverName: "evil.org" }, 400, /serverName/],
      ["taken slug", { name: "X", slug: "acme" }, 409, /already exists/],
    ];
    for (const [label, json, status, message] of cases) {
      const response = await ada.request("/api/v1/tenants", { json });
      expect(response.statusCode, label).toBe(status);
      expect(errorOf(response), label).toMatch(message);
    }
    for (const [type, status] of [
      ["application/xml", 415],
      ["text/plain", 400],
    ] as const) {
      const response = await ada.request("/api/v1/tenants", {
        method: "POST",
        body: "<tenant><name>X</name><slug>x5</slug></tenant>",
        headers: { "content-type": type, "x-csrf-token": await ada.csrfToken() },
      });
      expect(response.statusCode, type).toBe(status);
    }
    const noCsrf = await ada.request("/api/v1/tenants", {
      json: { name: "X", slug: "x6" },
      csrf: false,
    });
    expect(noCsrf.statusCode).toBe(403);
    const anonymous = await t.browser().request("/api/v1/tenants", {
      json: { name: "X", slug: "x7" },
    });
    expect(anonymous.statusCode).toBe(401);
    expect(await rowCounts(t)).toEqual(before);
  });

  it("needs a verified email to create a tenant", async () => {
    const before = await rowCounts(t);
    const unverified = await signedInUnverified(t, "dan@example.org");
    const api = await unverified.request("/api/v1/tenants", { json: { name: "D", slug: "dan" } });
    expect(api.statusCode).toBe(403);
    expect(errorOf(api)).toMatch(/verify your email address/);
    const page = await unverified.request("/tenants/new", { form: { name: "D", slug: "dan" } });
    expect(page.statusCode).toBe(403);
    expect(page.body).toContain("verify your email address");
    expect(await rowCounts(t)).toEqual(before);
  });

  it("refuses an expired session", async () => {
    const eve = await t.signedIn("eve@example.org");
    const tenant = await createTenant(eve, "eve");
    await expireSession(t, eve);
    const before = await rowCounts(t);
    expect((await eve.request(`/api/v1/tenants/${tenant.id}`)).statusCode).toBe(401);
    const create = await eve.request("/api/v1/tenants", { json: { name: "E", slug: "eve2" } });
    expect(create.statusCode).toBe(401);
    const page = await eve.request("/t/eve");
    expect(page.statusCode).toBe(303);
    expect(page.headers.location).toMatch(/^\/login/);
    expect(await rowCounts(t)).toEqual(before);
  });

  it("lets an API token see its own tenant only, and not create tenants", async () => {
    const mine = await createTenant(ada, "tokened");
    const other = await createTenant(bob, "bobs");
    const token = await tokenFor(t, mine.id);
    const list = await t.browser().request("/api/v1/tenants", { headers: bearer(token) });
    expect(list.json()).toEqual({
      items: [expect.objectContaining({ id: mine.id, role: "admin" })],
      nextCursor: null,
    });
    expect(
      (await t.browser().request(`/api/v1/tenants/${mine.id}`, { headers: bearer(token) }))
        .statusCode,
    ).toBe(200);
    expect(
      (await t.browser().request(`/api/v1/tenants/${other.id}`, { headers: bearer(token) }))
        .statusCode,
    ).toBe(404);
    const before = await rowCounts(t);
    const create = await t.browser().request("/api/v1/tenants", {
      json: { name: "T", slug: "by-token" },
      headers: bearer(token),
    });
    expect(create.statusCode).toBe(403);
    expect(await rowCounts(t)).toEqual(before);
  });

  it("documents the tenant, member and key routes in the OpenAPI document", async () => {
    const response = await t.browser().request("/api/v1/openapi.json");
    expect(response.statusCode).toBe(200);
    const paths = Object.keys((response.json() as { paths: Record<string, unknown> }).paths);
    for (const path of [
      "/api/v1/tenants",
      "/api/v1/tenants/{tenantId}",
      "/api/v1/tenants/{tenantId}/members",
      "/api/v1/tenants/{tenantId}/members/{accountId}",
      "/api/v1/tenants/{tenantId}/members/me/matrix-id",
      "/api/v1/tenants/{tenantId}/invitations",
      "/api/v1/tenants/{tenantId}/invitations/{invitationId}",
      "/api/v1/invitations/accept",
      "/api/v1/tenants/{tenantId}/keys",
      "/api/v1/tenants/{tenantId}/keys/{provider}",
      "/api/v1/tenants/{tenantId}/tokens",
      "/api/v1/tenants/{tenantId}/tokens/{tokenId}",
    ])
      expect(paths).toContain(path);
  });

  it("leaves no tenant behind when a step after the insert fails", async () => {
    const before = await rowCounts(t);
    await expect(
      t.app.tenants.create(
        {
          slug: "half",
          name: "Half",
          serverName: "half.example.test",
          homeserverUrl: "https://half.example.test",
        },
        { status: "provisioning" },
        async (trx, tenant) => {
          await trx("audit_log").insert({
            tenant_id: tenant.id,
            actor: "test",
            action: "tenant.create",
            via: "cli",
          });
          throw new AppError("internal", "the step after the owner failed");
        },
      ),
    ).rejects.toThrow("the step after the owner failed");
    expect(await rowCounts(t)).toEqual(before);
  });
});
