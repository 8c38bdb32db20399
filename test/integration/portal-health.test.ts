import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPortalTest, type PortalTest } from "../support/portal.ts";
import { seedTenant } from "../support/ops-fixtures.ts";

describe("portal health, metrics and OpenAPI", () => {
  let t: PortalTest;
  beforeAll(async () => {
    t = await startPortalTest();
  });
  afterAll(async () => {
    await t.stop();
  });

  it("is alive and ready on a migrated database with an outbox", async () => {
    const live = await t.portal.inject({ url: "/healthz" });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ status: "ok" });
    const ready = await t.portal.inject({ url: "/readyz" });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({
      status: "ready",
      checks: { database: "ok", migrations: "ok", mail: "ok" },
    });
  });

  it("says which check fails when migrations are missing", async () => {
    const knex = t.app.database.knex;
    const [row] = (await knex("knex_migrations").orderBy("id", "desc").limit(1)) as {
      id: number;
      name: string;
    }[];
    if (row === undefined) throw new Error("no migrations recorded");
    await knex("knex_migrations").where({ id: row.id }).delete();
    try {
      const ready = await t.portal.inject({ url: "/readyz" });
      expect(ready.statusCode).toBe(503);
      const body = ready.json() as { checks: Record<string, string> };
      expect(body.checks.database).toBe("ok");
      expect(body.checks.migrations).toContain(row.name);
    } finally {
      await knex("knex_migrations").insert(row);
    }
  });

  it("counts requests by route pattern, never by raw URL", async () => {
    const browser = await t.signedIn("metrics@example.org");
    const tenant = await seedTenant(t, "metrics-co", [{ browser, role: "owner" }]);
    expect((await browser.request(`/api/v1/tenants/${tenant.id}/usage`)).statusCode).toBe(200);
    expect((await browser.request("/t/metrics-co/usage")).statusCode).toBe(200);
    expect((await t.portal.inject({ url: "/no/such/page/12345" })).statusCode).toBe(404);
    const metrics = await t.portal.inject({ url: "/metrics" });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers["content-type"]).toContain("text/plain");
    const text = metrics.body;
    expect(text).toMatch(
      /switchboard_portal_requests_total\{method="GET",route="\/api\/v1\/tenants\/:tenantId\/usage",status_class="2xx"\} 1/,
    );
    expect(text).toContain('route="/t/:slug/usage"');
    expect(text).toContain('route="unmatched",status_class="4xx"');
    expect(text).toContain("switchboard_portal_request_seconds_bucket");
    expect(text).not.toContain(tenant.id);
    expect(text).not.toContain("metrics-co");
    expect(text).not.toContain("12345");
    // The runtime's registry is merged in.
    expect(text).toContain("switchboard_appservice_transactions_total");
  });

  it("serves the OpenAPI document: only /api/v1 routes, each with tags, a summary and a response schema", async () => {
    const response = await t.portal.inject({ url: "/api/v1/openapi.json" });
    expect(response.statusCode).toBe(200);
    const doc = response.json() as {
      openapi: string;
      paths: Record<
        string,
        Record<string, { tags?: string[]; summary?: string; responses?: Record<string, unknown> }>
      >;
    };
    expect(doc.openapi).toBe("3.1.0");
    const paths = Object.keys(doc.paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        "/api/v1/tenants/{tenantId}/usage",
        "/api/v1/tenants/{tenantId}/audit",
        "/api/v1/admin/tenants",
        "/api/v1/admin/tenants/{tenantId}",
        "/api/v1/admin/tenants/{tenantId}/suspend",
        "/api/v1/admin/tenants/{tenantId}/resume",
        "/api/v1/admin/tenants/{tenantId}/reprovision",
        "/api/v1/admin/tenants/{tenantId}/plan",
      ]),
    );
    for (const path of paths) {
      expect(path.startsWith("/api/v1/"), path).toBe(true);
      expect(path).not.toContain("openapi.json");
      expect(path).not.toContain("/docs");
      for (const [method, operation] of Object.entries(doc.paths[path] ?? {})) {
        const where = `${method.toUpperCase()} ${path}`;
        expect(operation.tags?.length ?? 0, where).toBeGreaterThan(0);
        expect(operation.summary ?? "", where).not.toBe("");
        const statuses = Object.keys(operation.responses ?? {});
        expect(
          statuses.some((status) => status.startsWith("2")),
          `${where} declares a 2xx response`,
        ).toBe(true);
      }
    }
  });

  it("renders the docs page from the document, without scripts of its own", async () => {
    const response = await t.portal.inject({ url: "/api/v1/docs" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toContain("text/html");
    const html = response.body;
    expect(html).toContain('id="tag-admin"');
    expect(html).toContain("GET /api/v1/tenants/{tenantId}/usage");
    expect(html).toContain("PUT /api/v1/admin/tenants/{tenantId}/plan");
    expect(html).toContain("plan: string");
    expect(html).not.toMatch(/<script(?![^>]*src="\/static\/)/);
    expect(html).not.toContain("https://cdn");
  });

  it("is not ready when the database is gone (last: it closes the database)", async () => {
    await t.app.database.close();
    const live = await t.portal.inject({ url: "/healthz" });
    expect(live.statusCode).toBe(200);
    const ready = await t.portal.inject({ url: "/readyz" });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toMatchObject({
      status: "unavailable",
      checks: { database: "failed: the database does not answer", mail: "ok" },
    });
  });
});
