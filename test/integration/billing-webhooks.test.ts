import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readOutbox } from "../../src/accounts/mailer.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import {
  PRO_PRICE,
  STARTER_PRICE,
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
import { FAKE_STRIPE_WEBHOOK_SECRET } from "../support/fake-stripe.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import type { Browser } from "../support/portal.ts";

const DAY_MS = 86_400_000;
const GRACE_DAYS = 3;
const RETENTION_DAYS = 10;

describe.each(BACKENDS)("Stripe webhooks (%s)", (backend) => {
  let b: BillingTest;
  let owner: Browser;
  let seq = 0;

  const newTenant = async (): Promise<TenantId> => {
    seq += 1;
    const { id } = await seedTenant(b.t, `shop${String(seq)}`, [{ browser: owner, role: "owner" }]);
    return id;
  };
  const eventCount = async (): Promise<number> => {
    const [row] = (await b.t.database.knex("stripe_events").count({ n: "*" })) as {
      n: string | number;
    }[];
    return Number(row?.n ?? 0);
  };
  const mailsTo = async (email: string, subject: RegExp): Promise<number> =>
    (await readOutbox(b.t.outboxDir, 500)).filter(
      (mail) => mail.to === email && subject.test(mail.subject),
    ).length;

  beforeAll(async () => {
    b = await startBillingTest(backend, {
      graceDays: GRACE_DAYS,
      cancellationRetentionDays: RETENTION_DAYS,
    });
    owner = await b.t.signedIn("owner@example.org");
  });
  afterAll(async () => {
    await b.stop();
  });

  it("refuses forged, stale, unsigned and malformed webhooks with 400 and writes nothing", async () => {
    const tenantId = await newTenant();
    const subscription = b.fake.createSubscription({
      customer: "cus_nobody",
      priceId: STARTER_PRICE,
      metadata: { tenant_id: tenantId },
    });
    const before = await eventCount();
    const refusals = [
      await b.fake.sendSubscriptionEvent("updated", subscription.id, { secret: "whsec_forged" }),
      await b.fake.sendSubscriptionEvent("updated", subscription.id, {
        timestamp: Math.floor(Date.now() / 1000) - 3600,
      }),
      await b.fake.sendSubscriptionEvent("updated", subscription.id, { signatureHeader: null }),
      await b.fake.sendSubscriptionEvent("updated", subscription.id, {
        signatureHeader: "t=1,v1=deadbeef",
      }),
      // Correctly signed, but not JSON, and JSON that is not an event.
      await b.fake.send("customer.subscription.updated", subscription, {
        rawPayload: '{"id": "evt_1", "type": ',
      }),
      await b.fake.send("customer.subscription.updated", subscription, {
        rawPayload: JSON.stringify({ hello: "world" }),
      }),
    ];
    for (const refusal of refusals) {
      expect(refusal.status, refusal.body).toBe(400);
      expect(JSON.parse(refusal.body)).toMatchObject({ error: { code: "bad_request" } });
    }
    expect(refusals[0]?.body).toContain("signature");
    expect(await eventCount()).toBe(before);
    expect(await subscriptionRow(b.t, tenantId)).toBeUndefined();
    expect((await tenantRow(b.t, tenantId)).plan).toBe("free");
  });

  it("checkout.session.completed upgrades the tenant; a duplicate delivery is acknowledged and ignored", async () => {
    const tenantId = await newTenant();
    const subscriptionId = await subscribe(b, owner, tenantId, "starter");
    expect((await tenantRow(b.t, tenantId)).plan).toBe("starter");
    const row = await subscriptionRow(b.t, tenantId);
    expect(row).toMatchObject({
      stripe_subscription_id: subscriptionId,
      status: "active",
      price_id: STARTER_PRICE,
    });
    expect(await auditCount(b.t, tenantId, "tenant.plan")).toBe(1);

    const subscription = b.fake.subscriptions.get(subscriptionId) ?? {};
    const first = await b.fake.send("customer.subscription.created", subscription);
    expect(await processed(b.t, first.eventId)).toBe("done");
    const again = await b.fake.send("customer.subscription.created", subscription, {
      eventId: first.eventId,
    });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    expect(await auditCount(b.t, tenantId, "tenant.plan")).toBe(1);
  });

  it("an unknown price id is logged and ignored: the plan stays", async () => {
    const tenantId = await newTenant();
    const subscriptionId = await subscribe(b, owner, tenantId, "starter");
    b.fake.updateSubscription(subscriptionId, { priceId: "price_from_another_product" });
    const delivery = await b.fake.sendSubscriptionEvent("updated", subscriptionId);
    expect(delivery.status).toBe(200);
    expect(await processed(b.t, delivery.eventId)).toBe("ignored");
    expect((await tenantRow(b.t, tenantId)).plan).toBe("starter");
    expect((await subscriptionRow(b.t, tenantId))?.price_id).toBe(STARTER_PRICE);
    // Back on a known price (Pro), the next event applies it.
    b.fake.updateSubscription(subscriptionId, { priceId: PRO_PRICE });
    const next = await b.fake.sendSubscriptionEvent("updated", subscriptionId);
    expect(await processed(b.t, next.eventId)).toBe("done");
    expect((await tenantRow(b.t, tenantId)).plan).toBe("pro");
  });

  it("payment failure: past due with banner and one mail, suspended after the grace period, restored when paid", async () => {
    const tenantId = await newTenant();
    const { slug } = (await b.t.database.knex("tenants").where({ id: tenantId }).first("slug")) as {
      slug: string;
    };
    const subscriptionId = await subscribe(b, owner, tenantId, "starter");
    b.fake.updateSubscription(subscriptionId, { status: "past_due" });
    const failed = await b.fake.send("invoice.payment_failed", b.fake.invoice(subscriptionId));
    expect(await processed(b.t, failed.eventId)).toBe("done");
    const row = await subscriptionRow(b.t, tenantId);
    expect(row?.status).toBe("past_due");
    expect(row?.past_due_since).not.toBeNull();
    expect((await tenantRow(b.t, tenantId)).status).toBe("active");
    expect((await tenantRow(b.t, tenantId)).plan).toBe("starter");
    expect(await mailsTo("owner@example.org", new RegExp(`Tenant ${slug}: payment failed`))).toBe(
      1,
    );
    const page = await owner.request(`/t/${slug}/agents`);
    expect(page.body).toContain("Payment failed on");
    expect(page.body).toContain(`/t/${slug}/billing`);

    // Stripe retries the charge and fails again: no second mail.
    const again = await b.fake.send("invoice.payment_failed", b.fake.invoice(subscriptionId));
    expect(await processed(b.t, again.eventId)).toBe("done");
    expect(await mailsTo("owner@example.org", new RegExp(`Tenant ${slug}: payment failed`))).toBe(
      1,
    );

    // Within the grace period the tick leaves it alone; after it, the tenant is suspended.
    expect(await b.t.app.billing.sync.dunningTick()).not.toContain(tenantId);
    expect((await tenantRow(b.t, tenantId)).status).toBe("active");
    const later = new Date(Date.now() + (GRACE_DAYS + 1) * DAY_MS);
    expect(await b.t.app.billing.sync.dunningTick(later)).toEqual([tenantId]);
    expect(await b.t.app.billing.sync.dunningTick(later)).toEqual([]);
    expect((await tenantRow(b.t, tenantId)).status).toBe("suspended");
    expect(await holdsOf(b.t, tenantId)).toEqual(["billing"]);
    expect((await owner.request(`/t/${slug}/billing`)).body).toContain("this tenant is suspended");

    b.fake.updateSubscription(subscriptionId, { status: "active" });
    const paid = await b.fake.send("invoice.paid", b.fake.invoice(subscriptionId, "paid"));
    expect(await processed(b.t, paid.eventId)).toBe("done");
    expect((await tenantRow(b.t, tenantId)).status).toBe("active");
    expect(await holdsOf(b.t, tenantId)).toEqual([]);
    expect((await subscriptionRow(b.t, tenantId))?.past_due_since).toBeNull();
    expect((await owner.request(`/t/${slug}/agents`)).body).not.toContain("Payment failed");
  });

  it("out of order: subscription.deleted before subscription.updated ends canceled, deletion scheduled once", async () => {
    const tenantId = await newTenant();
    const subscriptionId = await subscribe(b, owner, tenantId, "pro");
    expect((await tenantRow(b.t, tenantId)).plan).toBe("pro");
    const stillActive = structuredClone(b.fake.subscriptions.get(subscriptionId) ?? {});
    b.fake.cancelSubscription(subscriptionId);
    const deleted = await b.fake.sendSubscriptionEvent("deleted", subscriptionId);
    // The older "updated" event arrives last, its payload still saying active.
    const updated = await b.fake.send("customer.subscription.updated", stillActive);
    expect(await processed(b.t, deleted.eventId)).toBe("done");
    expect(await processed(b.t, updated.eventId)).toBe("done");
    const tenant = await tenantRow(b.t, tenantId);
    expect(tenant.plan).toBe("free");
    expect(tenant.status).toBe("suspended");
    expect(tenant.delete_after).not.toBeNull();
    const deleteAfter = new Date(tenant.delete_after ?? 0).getTime();
    expect(Math.abs(deleteAfter - (Date.now() + RETENTION_DAYS * DAY_MS))).toBeLessThan(60_000);
    expect((await subscriptionRow(b.t, tenantId))?.status).toBe("canceled");
    expect(await auditCount(b.t, tenantId, "tenant.delete")).toBe(1);

    // Replaying every event changes nothing more.
    await b.t.app.database
      .knex("stripe_events")
      .whereIn("id", [deleted.eventId, updated.eventId])
      .delete();
    const replay = await b.fake.sendSubscriptionEvent("deleted", subscriptionId, {
      eventId: deleted.eventId,
    });
    expect(await processed(b.t, replay.eventId)).toBe("done");
    expect(await auditCount(b.t, tenantId, "tenant.delete")).toBe(1);
    expect(await auditCount(b.t, tenantId, "tenant.plan")).toBe(2);
  });

  it("paused subscriptions hold the tenant; resumed ones release it", async () => {
    const tenantId = await newTenant();
    const subscriptionId = await subscribe(b, owner, tenantId, "starter");
    b.fake.pauseSubscription(subscriptionId);
    const paused = await b.fake.sendSubscriptionEvent("paused", subscriptionId);
    expect(await processed(b.t, paused.eventId)).toBe("done");
    expect((await tenantRow(b.t, tenantId)).status).toBe("suspended");
    b.fake.resumeSubscription(subscriptionId);
    const resumed = await b.fake.sendSubscriptionEvent("resumed", subscriptionId);
    expect(await processed(b.t, resumed.eventId)).toBe("done");
    expect((await tenantRow(b.t, tenantId)).status).toBe("active");
    expect(await holdsOf(b.t, tenantId)).toEqual([]);
  });

  it("acknowledges event types it does not handle, and events about unknown subscriptions, without acting", async () => {
    const other = await b.fake.send("customer.created", { id: "cus_x", object: "customer" });
    expect(other.status).toBe(200);
    expect(await processed(b.t, other.eventId)).toBe("ignored");
    const stranger = b.fake.createSubscription({ customer: "cus_stranger", priceId: PRO_PRICE });
    const unknown = await b.fake.sendSubscriptionEvent("updated", stranger.id);
    expect(await processed(b.t, unknown.eventId)).toBe("ignored");
    const gone = await b.fake.send("customer.subscription.updated", { id: "sub_missing" });
    expect(await processed(b.t, gone.eventId)).toBe("ignored");
  });

  it("signs like Stripe: the SDK verifies what the fake sends", () => {
    const payload = JSON.stringify(b.fake.event("invoice.paid", { id: "in_1" }));
    const header = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: FAKE_STRIPE_WEBHOOK_SECRET,
    });
    expect(Stripe.webhooks.constructEvent(payload, header, FAKE_STRIPE_WEBHOOK_SECRET).type).toBe(
      "invoice.paid",
    );
  });
});
