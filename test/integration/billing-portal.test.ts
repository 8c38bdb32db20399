import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  PRO_PRICE,
  startBillingTest,
  subscribe,
  subscriptionRow,
  type BillingTest,
} from "../support/billing.ts";
import { BACKENDS } from "../support/database.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { errorOf } from "../support/portal-tenants.ts";
import { startPortalTest, type Browser } from "../support/portal.ts";

describe.each(BACKENDS)("billing pages and API (%s)", (backend) => {
  let b: BillingTest;
  let owner: Browser;
  let member: Browser;
  let stranger: Browser;
  let acme: { id: string; slug: string };

  beforeAll(async () => {
    b = await startBillingTest(backend);
    owner = await b.t.signedIn("owner@example.org");
    member = await b.t.signedIn("member@example.org");
    stranger = await b.t.signedIn("stranger@example.org");
    acme = await seedTenant(b.t, "acme", [
      { browser: owner, role: "owner" },
      { browser: member, role: "member" },
    ]);
  });
  afterAll(async () => {
    await b.stop();
  });

  const api = (path = "") => `/api/v1/tenants/${acme.id}/billing${path}`;

  it("refuses bad input, members and strangers; nothing reaches Stripe", async () => {
    const before = b.fake.requests.length;
    for (const [json, message] of [
      [{ plan: "gold" }, "plan: must be one of starter, pro"],
      [{ plan: "free" }, "plan: must be one of starter, pro"],
      [{ plan: "" }, "body.plan"],
      [{}, "body.plan"],
      [{ plan: "x".repeat(100) }, "body.plan"],
    ] as const) {
      const response = await owner.request(api("/checkout"), { json });
      expect(response.statusCode, response.body).toBe(400);
      expect(errorOf(response)).toContain(message);
    }
    expect((await member.request(api("/checkout"), { json: { plan: "pro" } })).statusCode).toBe(
      403,
    );
    expect((await member.request(api())).statusCode).toBe(403);
    expect((await member.request(`/t/acme/billing`)).statusCode).toBe(403);
    expect((await stranger.request(api("/checkout"), { json: { plan: "pro" } })).statusCode).toBe(
      404,
    );
    expect((await stranger.request(`/t/acme/billing`)).statusCode).toBe(404);
    expect(
      (await owner.request(api("/checkout"), { json: { plan: "pro" }, csrf: false })).statusCode,
    ).toBe(403);
    // No billing account yet: the customer portal has nothing to show.
    const portal = await owner.request(api("/portal"), { method: "POST" });
    expect(portal.statusCode).toBe(409);
    expect(errorOf(portal)).toContain("upgrade to a paid plan first");
    expect(b.fake.requests.length).toBe(before);
    expect(await subscriptionRow(b.t, acme.id as never)).toBeUndefined();
  });

  it("starts Checkout with idempotency keys: a double click gets the same session, one customer", async () => {
    const first = await owner.request(api("/checkout"), { json: { plan: "pro" } });
    expect(first.statusCode, first.body).toBe(200);
    const second = await owner.request(api("/checkout"), { json: { plan: "pro" } });
    const url = (first.json() as { url: string }).url;
    expect((second.json() as { url: string }).url).toBe(url);
    expect(url.startsWith(b.fake.url)).toBe(true);
    expect(b.fake.checkoutSessions.size).toBe(1);
    expect(b.fake.customers.size).toBe(1);
    const session = b.fake.lastCheckoutSession();
    expect(session).toMatchObject({
      mode: "subscription",
      client_reference_id: acme.id,
      subscription_data: { trial_period_days: "14", metadata: { tenant_id: acme.id } },
      success_url:
        "http://127.0.0.1:" + new URL(b.t.url ?? "").port + "/t/acme/billing?checkout=success",
    });
    const posts = b.fake.requests.filter((r) => r.path === "/v1/checkout/sessions");
    expect(posts.map((r) => r.replayed)).toEqual([false, true]);
    expect(posts[0]?.idempotencyKey).toMatch(new RegExp(`^checkout:${acme.id}:${PRO_PRICE}:\\d+$`));
    expect(posts[0]?.params).toMatchObject({ line_items: [{ price: PRO_PRICE, quantity: "1" }] });
    expect(b.fake.requests.find((r) => r.path === "/v1/customers")?.idempotencyKey).toBe(
      `customer:${acme.id}`,
    );
  });

  it("the page's buttons send the browser to Stripe (303), which the form-action policy allows", async () => {
    const page = await owner.request("/t/acme/billing");
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("Professional");
    expect(page.body).toContain('action="/t/acme/billing/checkout"');
    expect(page.body).toContain('href="/t/acme/billing" aria-current="page"');
    expect(page.headers["content-security-policy"]).toContain(`form-action 'self' ${b.fake.url}`);
    const upgrade = await owner.request("/t/acme/billing/checkout", { form: { plan: "pro" } });
    expect(upgrade.statusCode).toBe(303);
    expect(upgrade.headers.location).toBe(b.fake.lastCheckoutSession().url);
    const bad = await owner.request("/t/acme/billing/checkout", { form: { plan: "gold" } });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain("plan: must be one of starter, pro");
    const manage = await owner.request("/t/acme/billing/portal", { form: {} });
    expect(manage.statusCode).toBe(303);
    expect(manage.headers.location).toMatch(new RegExp(`^${b.fake.url}/p/session/bps_`));
  });

  it("once subscribed: status shown, Checkout refused (409), the customer portal opens", async () => {
    await subscribe(b, owner, acme.id as never, "pro");
    const overview = await owner.request(api());
    expect(overview.statusCode).toBe(200);
    expect(overview.json()).toMatchObject({
      enabled: true,
      plan: { id: "pro", name: "Professional", limits: { agents: 10, messagesPerDay: 10_000 } },
      subscription: { status: "trialing", priceId: PRO_PRICE, pastDueSince: null },
    });
    const again = await owner.request(api("/checkout"), { json: { plan: "starter" } });
    expect(again.statusCode).toBe(409);
    expect(errorOf(again)).toContain("Manage billing");
    const portal = await owner.request(api("/portal"), { method: "POST" });
    expect(portal.statusCode).toBe(200);
    expect(b.fake.portalSessions.size).toBeGreaterThan(0);
    const page = await owner.request("/t/acme/billing");
    expect(page.body).toContain("trialing");
    expect(page.body).toContain("Manage billing");
    expect(page.body).not.toContain('action="/t/acme/billing/checkout"');
  });

  it("Stripe unreachable: 502 with a clear message, never a 500", async () => {
    const { id } = await seedTenant(b.t, "offline", [{ browser: owner, role: "owner" }]);
    b.fake.loseNextResponses(100);
    const response = await owner.request(`/api/v1/tenants/${id}/billing/checkout`, {
      json: { plan: "starter" },
    });
    b.fake.loseNextResponses(0);
    expect(response.statusCode).toBe(502);
    expect(errorOf(response)).toContain("Stripe could not be reached");
  });
});

describe("billing off (no Stripe keys)", () => {
  it("says an operator assigns plans; checkout and portal are 409; no webhook route", async () => {
    const t = await startPortalTest();
    try {
      const owner = await t.signedIn("owner@example.org");
      const { id } = await seedTenant(t, "selfhost", [{ browser: owner, role: "owner" }]);
      const page = await owner.request("/t/selfhost/billing");
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain("Billing is off on this server; an operator assigns plans.");
      const overview = await owner.request(`/api/v1/tenants/${id}/billing`);
      expect(overview.json()).toMatchObject({
        enabled: false,
        plan: { id: "free" },
        purchasable: [],
      });
      const checkout = await owner.request(`/api/v1/tenants/${id}/billing/checkout`, {
        json: { plan: "pro" },
      });
      expect(checkout.statusCode).toBe(409);
      expect(errorOf(checkout)).toContain("billing is off");
      expect(
        (await owner.request(`/api/v1/tenants/${id}/billing/portal`, { method: "POST" }))
          .statusCode,
      ).toBe(409);
      const webhook = await t.portal.inject({
        method: "POST",
        url: "/api/v1/billing/webhook",
        headers: { "content-type": "application/json", "stripe-signature": "t=1,v1=x" },
        payload: "{}",
      });
      // No such route (the CSRF check refuses the unknown POST before the 404 handler does).
      expect([403, 404]).toContain(webhook.statusCode);
      expect(
        Number(
          ((await t.database.knex("stripe_events").count({ n: "*" })) as { n: string }[])[0]?.n,
        ),
      ).toBe(0);
      expect(page.headers["content-security-policy"]).toContain("form-action 'self';");
    } finally {
      await t.stop();
    }
  });
});
