import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tenantSnapshot } from "../support/hostile-input.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

const RUNS_PER_ROUTE = 30;
const ZERO_UUID = "00000000-0000-4000-8000-000000000000";

/** Every form the pages post (logout left out: it would end the run, not test input). */
const FORM_ROUTES = [
  "/signup",
  "/reset",
  "/reset/confirm",
  "/login",
  "/verify/resend",
  "/invitations/accept",
  "/tenants/new",
  "/t/acme/billing/checkout",
  "/t/acme/billing/portal",
  "/t/acme/bridges/slack",
  "/t/acme/bridges/telegram/disconnect",
  "/t/acme/bridges/discord/agents",
  "/t/acme/homeserver-admin",
  "/t/acme/members/invite",
  "/t/acme/members/matrix-id",
  "/t/acme/members/matrix-id/remove",
  `/t/acme/members/${ZERO_UUID}/role`,
  `/t/acme/members/${ZERO_UUID}/remove`,
  `/t/acme/memory/people/${ZERO_UUID}/identities`,
  `/t/acme/memory/people/${ZERO_UUID}/identities/unlink`,
  `/t/acme/memory/people/${ZERO_UUID}/forget`,
  `/t/acme/memory/facts/${ZERO_UUID}/delete`,
  `/t/acme/invitations/${ZERO_UUID}/revoke`,
  "/t/acme/keys/openai",
  "/t/acme/keys/anthropic/remove",
  "/t/acme/tokens",
  `/t/acme/tokens/${ZERO_UUID}/revoke`,
  "/t/acme/agents/new",
  "/t/acme/agents/ada",
  "/t/acme/agents/ada/delete",
  "/t/acme/agents/ada/avatar",
  "/t/acme/settings/delete",
  "/t/acme/settings/restore",
  `/admin/tenants/${ZERO_UUID}/plan`,
  `/admin/tenants/${ZERO_UUID}/suspend`,
];

const FIELD_NAMES = [
  "name",
  "slug",
  "displayName",
  "instructions",
  "model",
  "provider",
  "email",
  "password",
  "token",
  "role",
  "matrixId",
  "userId",
  "key",
  "botToken",
  "appToken",
  "apiId",
  "apiHash",
  "agent",
  "roomId",
  "confirm",
  "plan",
  "__proto__",
  "constructor[prototype][isAdmin]",
  "__proto__[isAdmin]",
  "a".repeat(100),
];
const fieldValue = fc.oneof(
  fc.string({ unit: "binary", maxLength: 60 }),
  fc.constantFrom("", " ", "acme", "ada", "admin", "owner", "true", "-1", "a@example.org"),
  fc.constantFrom("x".repeat(20_000), "\ud800", "\u0000", "<script>alert(1)</script>"),
);
/** Raw urlencoded text: duplicated keys, bad percent escapes, encoded lone surrogates. */
const rawTail = fc.constantFrom(
  "",
  "&name=a&name=b",
  "&name=%E0%A4%A",
  "&name=%ED%A0%80",
  "&%zz=1",
  "&=&&=",
  "&name[]=1&name[x]=2",
  `&${"k=v&".repeat(2_000)}`,
);

describe("portal forms under hostile urlencoded bodies", () => {
  let t: PortalTest;
  let admin: Browser;

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
    const { id } = created.json() as { id: string };
    const agent = await admin.request(`/api/v1/tenants/${id}/agents`, { json: { name: "ada" } });
    expect(agent.statusCode, agent.body).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
  });

  // Regression: a NUL in a form field, a JSON body or a path reached PostgreSQL
  // (which cannot store it) and came back as a 500.
  it("refuses a NUL or unpaired surrogate in a form, a JSON body or a path with a 400 naming where, writing nothing", async () => {
    const before = await tenantSnapshot(t.app.database.knex);
    const form = await admin.request("/t/acme/tokens", { form: { name: "ci\u0000" } });
    expect(form.statusCode, form.body).toBe(400);
    expect(form.body).toContain("body.name: must not contain NUL characters");
    const api = await admin.request("/api/v1/tenants", {
      json: { name: "Nul", slug: "nul", extra: { deep: ["\u0000"] } },
    });
    expect(api.statusCode, api.body).toBe(400);
    expect((api.json() as { error: { message: string } }).error.message).toBe(
      "body.extra.deep.0: must not contain NUL characters",
    );
    expect((await admin.request("/t/ac%00me/agents")).statusCode).toBe(400);
    // An unpaired surrogate: jsonb (the audit log) refused it, a 500 too.
    const lone = await admin.request("/api/v1/tenants", {
      json: { name: "aaa\ud800", slug: "lone" },
    });
    expect(lone.statusCode, lone.body).toBe(400);
    expect((lone.json() as { error: { message: string } }).error.message).toBe(
      "body.name: must not contain unpaired surrogates (invalid Unicode)",
    );
    expect(await tenantSnapshot(t.app.database.knex)).toEqual(before);
  });

  it("answers every form with a redirect or page, or a 4xx that wrote nothing; never a 5xx", async () => {
    const csrf = await admin.csrfToken();
    const statuses = new Map<number, number>();
    for (const route of FORM_ROUTES) {
      await fc.assert(
        fc.asyncProperty(
          fc.dictionary(fc.constantFrom(...FIELD_NAMES), fieldValue, { maxKeys: 6 }),
          rawTail,
          fc.constantFrom("good", "good", "good", "none", "forged"),
          async (fields, tail, csrfKind) => {
            const before = await tenantSnapshot(t.app.database.knex);
            const form = new URLSearchParams(fields);
            if (csrfKind === "good") form.set("_csrf", csrf);
            if (csrfKind === "forged") form.set("_csrf", `${csrf.slice(0, -2)}xx`);
            const body = form.toString() + tail;
            const response = await admin.request(route, {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded" },
              body,
            });
            const where = `POST ${route} ${body.slice(0, 300)}: ${response.statusCode} ${response.body.slice(0, 300)}`;
            statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
            expect(response.statusCode, where).toBeLessThan(500);
            // (The operator area is 404 to everyone else, whatever the request carries.)
            if (csrfKind !== "good") expect([403, 404], where).toContain(response.statusCode);
            if (response.statusCode >= 400)
              expect(await tenantSnapshot(t.app.database.knex), where).toEqual(before);
          },
        ),
        { numRuns: RUNS_PER_ROUTE },
      );
    }
    expect(statuses.get(400) ?? 0).toBeGreaterThan(FORM_ROUTES.length);
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    // The session survived: the run did not sign itself out.
    expect((await admin.request("/t/acme")).statusCode).toBe(200);
  }, 240_000);
});
