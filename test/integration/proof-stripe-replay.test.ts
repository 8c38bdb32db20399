import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import {
  PRO_PRICE,
  auditCount,
  holdsOf,
  processed,
  startBillingTest,
  subscribe,
  subscriptionRow,
  tenantRow,
  type BillingTest,
} from "../support/billing.ts";
import { BACKENDS } from "../support/database.ts";
import type { StripeObject } from "../support/fake-stripe.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import type { Browser } from "../support/portal.ts";

/**
 * Proof (issue 8): Stripe delivers every event of a subscription's life five
 * times and in reverse order. Processing re-reads the subscription, stores
 * each event once and acts once, so the tenant ends exactly where in-order
 * delivery would leave it, with each change audited once.
 */

const DELIVERIES = 5;

describe.each(BACKENDS)("Stripe replays and reordering (%s)", (backend) => {
  let b: BillingTest;
  let owner: Browser;

  beforeAll(async () => {
    b = await startBillingTest(backend);
    owner = await b.t.signedIn("owner@example.org");
  });
  afterAll(async () => {
    await b.stop();
  });

  it("the same events five times each, newest first, end as one in-order delivery", async () => {
    const { id: tenantId } = await seedTenant(b.t, "replayed", [{ browser: owner, role: "owner" }]);
    const subscriptionId = await subscribe(b, owner, tenantId as TenantId, "starter");

    // The subscription's life after checkout, as Stripe would announce it.
    const events: { type: string; object: StripeObject; id: string }[] = [];
    const happen = (type: string, object: StripeObject): void => {
      // A snapshot: later changes to the fake's subscription do not rewrite what was announced.
      events.push({ type, object: structuredClone(object), id: b.fake.event(type, object).id });
    };
    b.fake.updateSubscription(subscriptionId, { priceId: PRO_PRICE });
    const subscription = b.fake.subscriptions.get(subscriptionId);
    if (subscription === undefined) throw new Error("the fake lost the subscription");
    happen("customer.subscription.updated", subscription);
    b.fake.updateSubscription(subscriptionId, { status: "past_due" });
    happen("invoice.payment_failed", b.fake.invoice(subscriptionId));
    b.fake.updateSubscription(subscriptionId, { status: "active" });
    happen("invoice.paid", b.fake.invoice(subscriptionId, "paid"));

    for (const event of [...events].reverse()) {
      for (let delivery = 0; delivery < DELIVERIES; delivery++) {
        const result = await b.fake.send(event.type, event.object, { eventId: event.id });
        expect(result.status, result.body).toBe(200);
      }
      expect(await processed(b.t, event.id)).toBe("done");
    }

    const stored = (await b.t.database
      .knex("stripe_events")
      .whereIn(
        "id",
        events.map((event) => event.id),
      )
      .count({ n: "*" })
      .first()) as { n: string | number };
    expect(Number(stored.n)).toBe(events.length);
    const tenant = await tenantRow(b.t, tenantId as TenantId);
    expect(tenant).toMatchObject({ plan: "pro", status: "active" });
    expect(await holdsOf(b.t, tenantId as TenantId)).toEqual([]);
    expect(await subscriptionRow(b.t, tenantId as TenantId)).toMatchObject({
      status: "active",
      past_due_since: null,
    });
    // free -> starter at checkout, starter -> pro once, however often it was told.
    expect(await auditCount(b.t, tenantId as TenantId, "tenant.plan")).toBe(2);
  });
});
