import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
import {
  conformsTo,
  hostileJsonText,
  tenantSnapshot,
  type JsonSchema,
} from "../support/hostile-input.ts";

const METHODS = ["get", "post", "put", "patch", "delete"] as const;
type Method = (typeof METHODS)[number];

interface Operation {
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  parameters?: { name: string; in: "path" | "query" | "header"; schema?: JsonSchema }[];
}
interface OpenApi {
  paths: Record<string, Partial<Record<Method, Operation>>>;
}

const RUNS_PER_ROUTE = 40;
const ZERO_UUID = "00000000-0000-4000-8000-000000000000";
/** Query values worth trying on any parameter: wrong types, huge, negative, injection-looking. */
const queryValue = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("-1", "0", "1e309", "NaN", "99999999999999999999", "null", "[]", "{}"),
  fc.constantFrom("' or 1=1 --", "%00", "a".repeat(5000), "__proto__", "2026-13-45"),
  fc.integer().map(String),
);

describe("portal JSON API under hostile bodies and parameters", () => {
  let t: PortalTest;
  let admin: Browser;
  let token: string;
  let tenant: { id: string; slug: string };

  beforeAll(async () => {
    t = await startPortalTest({
      database: "postgres",
      config: { portal: { apiRequestsPerMinute: 1_000_000, authAttemptsPerMinute: 10_000 } },
    });
    admin = await t.signedIn("admin@example.org");
    const created = await admin.request("/api/v1/tenants", {
      json: { name: "Acme", slug: "acme" },
    });
    expect(created.statusCode, created.body).toBe(201);
    tenant = created.json() as { id: string; slug: string };
    const agent = await admin.request(`/api/v1/tenants/${tenant.id}/agents`, {
      json: { name: "ada" },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    const issued = await admin.request(`/api/v1/tenants/${tenant.id}/tokens`, {
      json: { name: "ci" },
    });
    expect(issued.statusCode, issued.body).toBe(201);
    token = (issued.json() as { plaintext: string }).plaintext;
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
  });

  /** The route's path with this tenant's values, or a hostile value in one path parameter. */
  function fillPath(path: string, hostile: string | undefined, which: number): string {
    let index = 0;
    return path.replace(/\{(\w+)\}/g, (_match, name: string) => {
      const mine = index++ === which && hostile !== undefined;
      if (mine) return encodeURIComponent(hostile);
      if (name === "tenantId") return tenant.id;
      if (name === "name") return "ada";
      if (name === "provider") return "openai";
      if (name === "network") return "slack";
      return ZERO_UUID;
    });
  }

  // Regression: a key of control characters and astral letters was taken, and
  // its hint (the last four UTF-16 units) cut a surrogate pair the audit log's
  // jsonb refused: a 500.
  it("refuses a provider key that is not printable ASCII, writing nothing", async () => {
    const before = await tenantSnapshot(t.app.database.knex);
    const response = await t.browser().request(`/api/v1/tenants/${tenant.id}/keys/openai`, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}` },
      json: { key: "\u000e𐀀𐀀𐀀\u0001" },
      csrf: false,
    });
    expect(response.statusCode, response.body).toBe(400);
    expect((response.json() as { error: { message: string } }).error.message).toMatch(
      /printable ASCII/,
    );
    expect(await tenantSnapshot(t.app.database.knex)).toEqual(before);
  });

  it("answers every operation with a 4xx and no write, or a 2xx for a body its schema allows; never a 5xx", async () => {
    const openapi = (await admin.request("/api/v1/openapi.json")).json() as OpenApi;
    let operations = 0;
    const statuses = new Map<number, number>();
    for (const [path, item] of Object.entries(openapi.paths)) {
      for (const method of METHODS) {
        const operation = item[method];
        if (operation === undefined) continue;
        const bodySchema = operation.requestBody?.content?.["application/json"]?.schema;
        const params = operation.parameters ?? [];
        const pathParams = params.filter((p) => p.in === "path").length;
        const queryNames = params.filter((p) => p.in === "query").map((p) => p.name);
        if (bodySchema === undefined && params.length === 0) continue;
        // Signing out or deleting the tenant would end the run, not test input.
        if (path === "/api/v1/session" && method === "delete") continue;
        operations++;
        await fc.assert(
          fc.asyncProperty(
            bodySchema === undefined ? fc.constant(undefined) : hostileJsonText(bodySchema),
            fc.oneof(
              { weight: 3, arbitrary: fc.constant(null) },
              { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 300 }) },
            ),
            fc.nat({ max: Math.max(0, pathParams - 1) }),
            fc.dictionary(fc.constantFrom(...queryNames, "__proto__", "x"), queryValue, {
              maxKeys: 3,
            }),
            async (body, hostilePath, which, query) => {
              const before = await tenantSnapshot(t.app.database.knex);
              const search = new URLSearchParams(query).toString();
              const url =
                fillPath(path, hostilePath ?? undefined, which) + (search ? `?${search}` : "");
              const response = await t.browser().request(url, {
                method: method.toUpperCase() as "GET",
                headers: {
                  authorization: `Bearer ${token}`,
                  ...(body === undefined ? {} : { "content-type": "application/json" }),
                },
                ...(body === undefined ? {} : { body }),
                csrf: false,
              });
              const where = `${method.toUpperCase()} ${url.slice(0, 200)} ${String(body).slice(0, 300)}: ${response.statusCode} ${response.body.slice(0, 300)}`;
              statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
              expect(response.statusCode, where).toBeLessThan(500);
              expect(response.statusCode, where).toBeGreaterThanOrEqual(200);
              if (response.statusCode >= 400) {
                if (response.statusCode !== 404 || path.startsWith("/api/v1/"))
                  expect(response.json(), where).toHaveProperty("error.message");
                expect(await tenantSnapshot(t.app.database.knex), where).toEqual(before);
              } else if (body !== undefined && response.statusCode < 300) {
                expect(conformsTo(bodySchema, JSON.parse(body)), where).toBe(true);
              }
            },
          ),
          { numRuns: RUNS_PER_ROUTE },
        );
      }
    }
    expect(operations).toBeGreaterThan(20);
    // The run is meaningless if everything was refused before validation.
    expect(statuses.get(400) ?? 0).toBeGreaterThan(operations);
    // No request polluted the prototypes the app's objects share.
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  }, 240_000);
});
