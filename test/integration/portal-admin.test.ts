import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import { fakeHomeserver, seedTenant, signedInOperator } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";

interface TenantView {
  id: string;
  slug: string;
  plan: string;
  status: string;
  members: number;
  messagesToday: number;
  provisionRequestedAt: string;
  homeserver: {
    serverName: string;
    clientUrl: string;
    health: { state: string; detail: string | null };
  } | null;
}

describe("operator admin area", () => {
  let t: PortalTest;
  let operator: Browser;
  let owner: Browser;
  let healthy: Awaited<ReturnType<typeof fakeHomeserver>>;
  let acme: { id: TenantId; slug: string };
  let bravo: { id: TenantId; slug: string };

  /** The tenant's row and audit entries, to prove a refused request wrote nothing. */
  async function snapshot(id: TenantId): Promise<unknown> {
    const knex = t.app.database.knex;
    const tenant: unknown = await knex("tenants")
      .where({ id })
      .first("status", "plan", "provision_requested_at");
    const audit = (await knex("audit_log").where({ tenant_id: id }).count({ n: "*" }).first()) as {
      n: unknown;
    };
    return { tenant, audit: Number(audit.n) };
  }

  async function auditOf(
    id: TenantId,
  ): Promise<{ actor: string; action: string; via: string; details: Record<string, unknown> }[]> {
    return (await t.app.database
      .knex("audit_log")
      .where({ tenant_id: id })
      .orderBy("id", "desc")) as never;
  }

  beforeAll(async () => {
    t = await startPortalTest();
    healthy = await fakeHomeserver(() => 200);
    operator = await signedInOperator(t, "ops@example.org");
    owner = await t.signedIn("owner@example.org");
    acme = await seedTenant(t, "acme", [{ browser: owner, role: "owner" }], healthy.url);
    // Port 9 (discard) refuses connections: an unreachable homeserver.
    bravo = await seedTenant(t, "bravo", [], "http://127.0.0.1:9");
    await t.app.database.knex("usage_daily").insert({
      tenant_id: acme.id,
      day: new Date().toISOString().slice(0, 10),
      messages: 12,
    });
  });
  afterAll(async () => {
    await t.stop();
    await healthy.close();
  });

  it("hides the admin area from everyone but operators (404 like any unknown URL)", async () => {
    const unknown = await owner.request("/api/v1/nothing-here");
    for (const [method, url] of [
      ["GET", "/api/v1/admin/tenants"],
      ["GET", `/api/v1/admin/tenants/${acme.id}`],
      ["GET", `/api/v1/admin/tenants/${acme.id}/audit`],
      ["POST", `/api/v1/admin/tenants/${acme.id}/suspend`],
      ["POST", `/api/v1/admin/tenants/${acme.id}/resume`],
      ["POST", `/api/v1/admin/tenants/${acme.id}/reprovision`],
      ["PUT", `/api/v1/admin/tenants/${acme.id}/plan`],
    ] as const) {
      const response = await owner.request(url, {
        method,
        ...(method === "PUT" ? { json: { plan: "pro" } } : {}),
      });
      expect(response.statusCode, `${method} ${url}`).toBe(404);
      expect(response.body).toBe(unknown.body);
    }
    const page = await owner.request("/admin");
    expect(page.statusCode).toBe(404);
    expect((await owner.request(`/admin/tenants/${acme.id}`)).statusCode).toBe(404);
    expect(
      (await owner.request(`/admin/tenants/${acme.id}/suspend`, { form: {} })).statusCode,
    ).toBe(404);
    const { plaintext } = await t.app.apiTokens.create(acme.id, { name: "ci" }, null, {
      id: "t",
      via: "cli",
    });
    const token = await t.browser().request("/api/v1/admin/tenants", {
      headers: { authorization: `Bearer ${plaintext}` },
    });
    expect(token.statusCode).toBe(404);
    const anonymous = await t.browser().request("/admin");
    expect(anonymous.statusCode).toBe(303);
    expect(anonymous.headers.location).toBe("/login?next=%2Fadmin");
    expect((await t.browser().request("/api/v1/admin/tenants")).statusCode).toBe(401);
  });

  it("lists every tenant with plan, status, members, messages today and homeserver health", async () => {
    const response = await operator.request("/api/v1/admin/tenants");
    expect(response.statusCode).toBe(200);
    const { items, nextCursor } = response.json() as {
      items: TenantView[];
      nextCursor: string | null;
    };
    expect(nextCursor).toBeNull();
    expect(items.map((item) => item.slug)).toEqual(["acme", "bravo"]);
    expect(items[0]).toMatchObject({
      plan: "free",
      status: "active",
      members: 1,
      messagesToday: 12,
      homeserver: { serverName: "acme.example.test", health: { state: "up", detail: null } },
    });
    expect(items[1]?.homeserver?.health.state).toBe("down");
    // Cached: a second listing does not ask the homeserver again.
    const hits = healthy.hits();
    await operator.request("/api/v1/admin/tenants");
    expect(healthy.hits()).toBe(hits);

    const first = (await operator.request("/api/v1/admin/tenants?limit=1")).json() as {
      items: TenantView[];
      nextCursor: string;
    };
    expect(first.items.map((item) => item.slug)).toEqual(["acme"]);
    const second = (
      await operator.request(`/api/v1/admin/tenants?limit=1&cursor=${first.nextCursor}`)
    ).json() as { items: TenantView[]; nextCursor: string | null };
    expect(second.items.map((item) => item.slug)).toEqual(["bravo"]);
    expect(second.nextCursor).toBeNull();
    expect((await operator.request("/api/v1/admin/tenants?limit=500")).statusCode).toBe(400);
    expect((await operator.request("/api/v1/admin/tenants?cursor=zzz")).statusCode).toBe(400);

    const page = await operator.request("/admin");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(`href="/admin/tenants/${acme.id}"`);
    expect(page.body).toContain("status-healthy");
    expect(page.body).toContain("status-unreachable");
  });

  it("suspends and resumes, audited in the tenant's log with the operator's email", async () => {
    const suspended = await operator.request(`/api/v1/admin/tenants/${acme.id}/suspend`, {
      method: "POST",
    });
    expect(suspended.statusCode).toBe(200);
    expect(suspended.json()).toMatchObject({ changed: true, tenant: { status: "suspended" } });
    const [entry] = await auditOf(acme.id);
    expect(entry).toMatchObject({
      actor: "ops@example.org",
      action: "tenant.hold",
      via: "api",
      details: { reason: "operator", status: "suspended" },
    });

    const before = await snapshot(acme.id);
    const again = await operator.request(`/api/v1/admin/tenants/${acme.id}/suspend`, {
      method: "POST",
    });
    expect(again.statusCode).toBe(409);
    expect((again.json() as { error: { message: string } }).error.message).toContain(
      "already suspended",
    );
    expect(await snapshot(acme.id)).toEqual(before);

    // The tenant's own admins see who did it.
    const log = await owner.request(`/api/v1/tenants/${acme.id}/audit`);
    expect((log.json() as { items: { actor: string; action: string }[] }).items[0]).toMatchObject({
      actor: "ops@example.org",
      action: "tenant.hold",
    });

    const resumed = await operator.request(`/api/v1/admin/tenants/${acme.id}/resume`, {
      method: "POST",
    });
    expect(resumed.statusCode).toBe(200);
    expect(resumed.json()).toMatchObject({ tenant: { status: "active" } });
    const notSuspended = await operator.request(`/api/v1/admin/tenants/${acme.id}/resume`, {
      method: "POST",
    });
    expect(notSuspended.statusCode).toBe(409);
  });

  it("resumes a tenant that was provisioning back to provisioning", async () => {
    await t.app.database
      .knex("tenants")
      .where({ id: bravo.id })
      .update({ status: "provisioning", provisioned_at: null });
    await operator.request(`/api/v1/admin/tenants/${bravo.id}/suspend`, { method: "POST" });
    const resumed = await operator.request(`/api/v1/admin/tenants/${bravo.id}/resume`, {
      method: "POST",
    });
    expect(resumed.json()).toMatchObject({ tenant: { status: "provisioning" } });
  });

  it("asks for re-provisioning and assigns plans", async () => {
    const before = (
      await operator.request(`/api/v1/admin/tenants/${acme.id}`)
    ).json() as TenantView;
    const reprovision = await operator.request(`/api/v1/admin/tenants/${acme.id}/reprovision`, {
      method: "POST",
    });
    expect(reprovision.statusCode).toBe(200);
    const after = (reprovision.json() as { tenant: TenantView }).tenant;
    expect(Date.parse(after.provisionRequestedAt)).toBeGreaterThan(
      Date.parse(before.provisionRequestedAt),
    );
    expect((await auditOf(acme.id))[0]).toMatchObject({
      action: "tenant.reprovision",
      actor: "ops@example.org",
    });

    const plan = await operator.request(`/api/v1/admin/tenants/${acme.id}/plan`, {
      method: "PUT",
      json: { plan: "pro" },
    });
    expect(plan.statusCode).toBe(200);
    expect(plan.json()).toMatchObject({ changed: true, tenant: { plan: "pro" } });
    expect((await auditOf(acme.id))[0]).toMatchObject({
      action: "tenant.plan",
      details: { from: "free", to: "pro" },
    });
    const same = await operator.request(`/api/v1/admin/tenants/${acme.id}/plan`, {
      method: "PUT",
      json: { plan: "pro" },
    });
    expect(same.json()).toMatchObject({ changed: false });
    // The tenant's usage shows the new plan's limits.
    const usage = (await owner.request(`/api/v1/tenants/${acme.id}/usage?days=1`)).json() as {
      plan: { id: string; messagesPerDay: number };
    };
    expect(usage.plan).toMatchObject({ id: "pro", messagesPerDay: 10_000 });
  });

  it("refuses bad input with a 4xx and writes nothing", async () => {
    const before = await snapshot(acme.id);
    const csrf = await operator.csrfToken();
    const cases: [string, Parameters<Browser["request"]>[1], number][] = [
      ["/plan", { method: "PUT", json: { plan: "platinum" } }, 400],
      ["/plan", { method: "PUT", json: {} }, 400],
      ["/plan", { method: "PUT", json: { plan: 5 } }, 400],
      ["/plan", { method: "PUT", json: { plan: "x".repeat(33) } }, 400],
      ["/plan", { method: "PUT", json: { plan: "pro", extra: 1 } }, 400],
      [
        "/plan",
        {
          method: "PUT",
          body: "plan=pro",
          headers: { "content-type": "text/plain", "x-csrf-token": csrf },
        },
        400,
      ],
      [
        "/plan",
        {
          method: "PUT",
          body: "<plan>pro</plan>",
          headers: { "content-type": "application/xml", "x-csrf-token": csrf },
        },
        415,
      ],
      ["/plan", { method: "PUT", json: { plan: "starter" }, csrf: false }, 403],
      ["/suspend", { method: "POST", csrf: false }, 403],
    ];
    for (const [suffix, options, status] of cases) {
      const response = await operator.request(`/api/v1/admin/tenants/${acme.id}${suffix}`, options);
      expect(response.statusCode, `${suffix} ${JSON.stringify(options)}`).toBe(status);
      expect((response.json() as { error: { message: string } }).error.message).not.toBe("");
    }
    const unknownPlan = await operator.request(`/api/v1/admin/tenants/${acme.id}/plan`, {
      method: "PUT",
      json: { plan: "platinum" },
    });
    expect((unknownPlan.json() as { error: { message: string } }).error.message).toContain(
      "free, starter, pro, enterprise",
    );
    expect(await snapshot(acme.id)).toEqual(before);
    for (const id of ["00000000-0000-4000-8000-000000000000", "not-a-uuid"]) {
      expect((await operator.request(`/api/v1/admin/tenants/${id}`)).statusCode).toBe(404);
      expect(
        (await operator.request(`/api/v1/admin/tenants/${id}/suspend`, { method: "POST" }))
          .statusCode,
      ).toBe(404);
      expect((await operator.request(`/admin/tenants/${id}`)).statusCode).toBe(404);
    }
    expect((await operator.request(`/api/v1/admin/tenants/${"x".repeat(65)}`)).statusCode).toBe(
      400,
    );
  });

  it("runs the same actions from the pages, with flashes, re-rendered errors and CSRF", async () => {
    const detail = await operator.request(`/admin/tenants/${acme.id}`);
    expect(detail.statusCode).toBe(200);
    expect(detail.body).toContain("tenant.plan");
    expect(detail.body).toContain("asks the provisioner for a fresh pass at once");
    expect(detail.body).toContain('<option value="pro" selected>');

    const suspend = await operator.request(`/admin/tenants/${acme.id}/suspend`, { form: {} });
    expect(suspend.statusCode).toBe(303);
    expect(suspend.headers.location).toBe(`/admin/tenants/${acme.id}`);
    expect((await auditOf(acme.id))[0]).toMatchObject({ action: "tenant.hold", via: "portal" });
    const shown = await operator.request(`/admin/tenants/${acme.id}`);
    expect(shown.body).toContain("Suspended: its agents stop answering");

    const before = await snapshot(acme.id);
    const twice = await operator.request(`/admin/tenants/${acme.id}/suspend`, { form: {} });
    expect(twice.statusCode).toBe(409);
    expect(twice.body).toContain("already suspended");
    const badPlan = await operator.request(`/admin/tenants/${acme.id}/plan`, {
      form: { plan: "gold" },
    });
    expect(badPlan.statusCode).toBe(400);
    expect(badPlan.body).toContain("plan: must be one of");
    const forged = await operator.request(`/admin/tenants/${acme.id}/resume`, {
      form: {},
      csrf: false,
    });
    expect(forged.statusCode).toBe(403);
    const otherSession = await signedInOperator(t, "ops2@example.org");
    const replayed = await operator.request(`/admin/tenants/${acme.id}/resume`, {
      form: { _csrf: await otherSession.csrfToken() },
    });
    expect(replayed.statusCode).toBe(403);
    expect(await snapshot(acme.id)).toEqual(before);

    expect(
      (await operator.request(`/admin/tenants/${acme.id}/resume`, { form: {} })).statusCode,
    ).toBe(303);
    expect(
      (await operator.request(`/admin/tenants/${acme.id}/reprovision`, { form: {} })).statusCode,
    ).toBe(303);
    expect(
      (await operator.request(`/admin/tenants/${acme.id}/plan`, { form: { plan: "starter" } }))
        .statusCode,
    ).toBe(303);
    const actions = (await auditOf(acme.id)).slice(0, 3).map((entry) => entry.action);
    expect(actions).toEqual(["tenant.plan", "tenant.reprovision", "tenant.release"]);
  });

  it("pages through a tenant's audit log (API and page)", async () => {
    const first = (
      await operator.request(`/api/v1/admin/tenants/${acme.id}/audit?limit=2`)
    ).json() as { items: { action: string }[]; nextCursor: string };
    expect(first.items.map((item) => item.action)).toEqual(["tenant.plan", "tenant.reprovision"]);
    const second = (
      await operator.request(
        `/api/v1/admin/tenants/${acme.id}/audit?limit=2&cursor=${first.nextCursor}`,
      )
    ).json() as { items: { action: string }[] };
    expect(second.items[0]?.action).toBe("tenant.release");
    const page = await operator.request(`/admin/tenants/${acme.id}?limit=2`);
    expect(page.body).toMatch(/href="\/admin\/tenants\/[^"]+\?cursor=/);
    expect((await operator.request(`/admin/tenants/${acme.id}?cursor=@@`)).statusCode).toBe(400);
  });
});
