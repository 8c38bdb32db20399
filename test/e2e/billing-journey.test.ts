import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readOutbox } from "../../src/accounts/mailer.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { memberships } from "../../src/tenants/memberships.ts";
import { BILLING_PLANS, STARTER_PRICE, waitFor } from "../support/billing.ts";
import { FakeStripe } from "../support/fake-stripe.ts";
import { messageFrom, type ClientEvent, type MatrixTestUser } from "../support/matrix-user.ts";
import { accountIdOf } from "../support/ops-fixtures.ts";
import { signUpAndIn, type Browser } from "../support/portal.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

/**
 * The whole billing journey of one tenant on a real Synapse, a real
 * PostgreSQL and the real app (runtime and portal listening), with Stripe
 * played by the fake over HTTP through the real SDK and its webhooks
 * delivered, signed, to the portal's listener: Free, checkout, past due,
 * suspended after the grace period, paid, cancelled. Duplicate and
 * out-of-order deliveries are mixed in and must not change the outcome.
 */

const DAY_MS = 86_400_000;
const GRACE_DAYS = 3;
const RETENTION_DAYS = 10;
const OWNER = "owner@example.org";
const FREE_AGENTS = "the Free plan allows 1 agent; upgrade to add more";
const BILLING_HOLD_REASON = "its subscription is unpaid or paused";
const HANDLED_TIMEOUT_MS = 20_000;

describe("billing journey on a real homeserver", () => {
  let fake: FakeStripe;
  let stack: TestStack;
  let acme: StackTenant;
  let tenantId: TenantId;
  let owner: Browser;
  let alice: MatrixTestUser;
  let roomId: string;
  let ada: string;
  let subscriptionId: string;
  let provisionedAt: unknown;
  /** The subscription as an invoice.payment_failed event saw it, replayed late in step 4. */
  let pastDueSnapshot: Record<string, unknown>;

  const knex = () => stack.database.knex;
  const tenant = async () =>
    (await knex()("tenants").where({ id: tenantId }).first()) as {
      plan: string;
      status: string;
      delete_after: Date | null;
      provisioned_at: unknown;
    };
  const holds = async () =>
    (await knex()("tenant_holds").where({ tenant_id: tenantId }).pluck("reason")) as string[];
  const audits = async (action: string, details?: Record<string, unknown>): Promise<number> => {
    const rows = (await knex()("audit_log")
      .where({ tenant_id: tenantId, action })
      .select("details")) as { details: unknown }[];
    return rows.filter(({ details: raw }) => {
      if (details === undefined) return true;
      const parsed = (typeof raw === "string" ? JSON.parse(raw) : raw) as Record<string, unknown>;
      return Object.entries(details).every(([key, value]) => parsed[key] === value);
    }).length;
  };
  const mailsTo = async (subject: RegExp): Promise<number> =>
    (await readOutbox(stack.outboxDir, 500)).filter(
      (mail) => mail.to === OWNER && subject.test(mail.subject),
    ).length;
  /** Waits until the portal has processed a delivered event; its final status. */
  const processed = (eventId: string): Promise<string> =>
    waitFor(`Stripe event ${eventId} to be processed`, async () => {
      const row = (await knex()("stripe_events").where({ id: eventId }).first("status")) as
        { status: string } | undefined;
      return row === undefined || row.status === "pending" ? undefined : row.status;
    });
  /** Sends a webhook, expects it accepted, and waits for it to be processed. */
  const deliver = async (
    type: string,
    object: Record<string, unknown>,
    eventId?: string,
  ): Promise<string> => {
    const delivery = await fake.send(type, object, eventId === undefined ? {} : { eventId });
    expect(delivery.status, delivery.body).toBe(200);
    expect(await processed(delivery.eventId)).toBe("done");
    return delivery.eventId;
  };
  /** Waits until the runtime has handled a Matrix event (so anything it would post is posted). */
  const handled = (eventId: string): Promise<string> =>
    waitFor(
      `Matrix event ${eventId} to be handled`,
      async () => {
        const row = (await knex()("inbound_events")
          .where({ event_id: eventId })
          .first("status")) as { status: string } | undefined;
        return row?.status === "done" ? row.status : undefined;
      },
      HANDLED_TIMEOUT_MS,
    );
  const fromAda = (body: string) => (event: ClientEvent) =>
    messageFrom(ada)(event) && event.content.body === body;
  /** Alice says something and the agent answers with `reply` (through the model). */
  const answers = async (text: string, reply: string): Promise<void> => {
    const requestsBefore = stack.model.requests.length;
    stack.model.enqueue({ kind: "reply", text: reply });
    await alice.sendText(roomId, text);
    await alice.waitForEvent(roomId, fromAda(reply));
    expect(stack.model.requests.length).toBe(requestsBefore + 1);
  };
  const notices = async (): Promise<ClientEvent[]> => {
    await alice.sync(0);
    return (alice.timeline.get(roomId) ?? []).filter(
      (event) => messageFrom(ada)(event) && event.content.msgtype === "m.notice",
    );
  };

  beforeAll(async () => {
    fake = await FakeStripe.start();
    stack = await startStack({
      defaultPlan: "free",
      portal: true,
      config: {
        plans: BILLING_PLANS,
        billing: fake.billingConfig({
          graceDays: GRACE_DAYS,
          cancellationRetentionDays: RETENTION_DAYS,
        }),
      },
    });
    fake.webhookUrl = `${stack.portalUrl ?? ""}/api/v1/billing/webhook`;
    acme = await stack.addTenant("acme");
    tenantId = acme.tenant.id;
    owner = await signUpAndIn(await stack.app.portal.app(), stack.outboxDir, OWNER);
    const accountId = await accountIdOf(owner);
    await withTenant(knex(), tenantId, (trx) => memberships.add(trx, tenantId, accountId, "owner"));
    await acme.createAgent({ name: "ada" });
    ada = acme.agentUserId("ada");
    alice = await acme.user("alice");
    roomId = await alice.openDm(ada);
    provisionedAt = (await tenant()).provisioned_at;
  });
  afterAll(async () => {
    await stack?.stop();
    await fake?.close();
  });

  it("1. Free: the agent answers; a second agent is refused, naming the plan", async () => {
    expect((await tenant()).plan).toBe("free");
    await answers("hello Ada", "Hello Alice.");
    const refused = await owner.request(`/api/v1/tenants/${tenantId}/agents`, {
      json: { name: "bob" },
    });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({
      error: { code: "limit_reached", message: FREE_AGENTS },
    });
  });

  it("2. checkout: Stripe's signed webhook upgrades the tenant and the new limits apply; a duplicate is ignored", async () => {
    const started = await owner.request(`/api/v1/tenants/${tenantId}/billing/checkout`, {
      json: { plan: "starter" },
    });
    expect(started.statusCode, started.body).toBe(200);
    const session = fake.lastCheckoutSession();
    expect(session.client_reference_id).toBe(tenantId);
    const completed = fake.completeCheckout(session.id);
    subscriptionId = completed.subscription.id;
    expect(completed.subscription.status).toBe("active");
    const eventId = await deliver("checkout.session.completed", completed.session);
    expect((await tenant()).plan).toBe("starter");

    const bob = await owner.request(`/api/v1/tenants/${tenantId}/agents`, {
      json: { name: "bob" },
    });
    expect(bob.statusCode, bob.body).toBe(201);

    // Stripe delivers the same event again (its retry after a lost answer).
    const again = await fake.send("checkout.session.completed", completed.session, { eventId });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
    expect(await audits("tenant.plan")).toBe(1);
  });

  it("3. payment failure: banner and one mail, answers during grace, then suspended with one notice and no model call", async () => {
    fake.updateSubscription(subscriptionId, { status: "past_due" });
    pastDueSnapshot = structuredClone(fake.subscriptions.get(subscriptionId) ?? { id: "" });
    await deliver("invoice.payment_failed", fake.invoice(subscriptionId));
    // Stripe retries the charge and fails again: still one mail.
    await deliver("invoice.payment_failed", fake.invoice(subscriptionId));
    expect(await mailsTo(/^acme: payment failed$/)).toBe(1);
    const billingPage = await owner.request("/t/acme/billing");
    expect(billingPage.statusCode).toBe(200);
    expect(billingPage.body).toContain("Payment failed on");
    expect((await tenant()).status).toBe("active");
    expect((await tenant()).plan).toBe("starter");

    await answers("still there?", "Still here.");

    // The grace period is over (the tick is given the time; nothing sleeps).
    const afterGrace = new Date(Date.now() + (GRACE_DAYS + 1) * DAY_MS);
    expect(await stack.app.billing.sync.dunningTick(afterGrace)).toEqual([tenantId]);
    expect(await stack.app.billing.sync.dunningTick(afterGrace)).toEqual([]);
    expect((await tenant()).status).toBe("suspended");
    expect(await holds()).toEqual(["billing"]);

    const requestsBefore = stack.model.requests.length;
    await alice.sendText(roomId, "Ada?");
    const notice = await alice.waitForEvent(
      roomId,
      (event) => messageFrom(ada)(event) && event.content.msgtype === "m.notice",
    );
    expect(notice.content.body).toContain("This tenant is suspended, so its agents do not answer");
    expect(notice.content.body).toContain(BILLING_HOLD_REASON);
    await handled(await alice.sendText(roomId, "hello? anyone?"));
    expect(await notices()).toHaveLength(1);
    expect(stack.model.requests.length).toBe(requestsBefore);
    expect((await owner.request("/t/acme/billing")).body).toContain("this tenant is suspended");
  });

  it("4. payment: the hold is lifted at once and the agent answers; a late stale event changes nothing", async () => {
    fake.updateSubscription(subscriptionId, { status: "active" });
    await deliver("invoice.paid", fake.invoice(subscriptionId, "paid"));
    expect((await tenant()).status).toBe("active");
    expect(await holds()).toEqual([]);

    // An older customer.subscription.updated (still saying past_due) arrives last:
    // the processor re-reads Stripe, so the tenant stays active.
    await deliver("customer.subscription.updated", pastDueSnapshot);
    expect((await tenant()).status).toBe("active");
    expect(await holds()).toEqual([]);
    expect(await mailsTo(/^acme: payment failed$/)).toBe(1);

    await answers("are you back?", "Back again.");
    expect(await notices()).toHaveLength(1);
    expect(await audits("tenant.hold", { reason: "billing" })).toBe(1);
    expect(await audits("tenant.release", { reason: "billing" })).toBe(1);
  });

  it("5. cancellation (deleted before a stale updated, then a duplicate): default plan, deletion scheduled once, data kept", async () => {
    const stillActive = structuredClone(fake.subscriptions.get(subscriptionId) ?? { id: "" });
    expect((stillActive.items as { data: { price: { id: string } }[] }).data[0]?.price.id).toBe(
      STARTER_PRICE,
    );
    fake.cancelSubscription(subscriptionId);
    const deleted = await deliver(
      "customer.subscription.deleted",
      fake.subscriptions.get(subscriptionId) ?? {},
    );
    await deliver("customer.subscription.updated", stillActive);
    const duplicate = await fake.sendSubscriptionEvent("deleted", subscriptionId, {
      eventId: deleted,
    });
    expect(JSON.parse(duplicate.body)).toEqual({ received: true, duplicate: true });

    const after = await tenant();
    expect(after.plan).toBe("free");
    expect(after.delete_after).not.toBeNull();
    const deleteAfterMs = new Date(after.delete_after ?? 0).getTime();
    expect(Math.abs(deleteAfterMs - (Date.now() + RETENTION_DAYS * DAY_MS))).toBeLessThan(60_000);
    expect(after.status).toBe("suspended");
    expect(await holds()).toEqual(["deletion"]);
    expect(
      (await knex()("subscriptions").where({ tenant_id: tenantId }).first("status")) as {
        status: string;
      },
    ).toEqual({ status: "canceled" });

    // Data kept: both agents (the one over Free's limit paused, not deleted) and the conversation.
    const agents = (await knex()("agents")
      .where({ tenant_id: tenantId })
      .orderBy("name")
      .select("name", "status")) as { name: string; status: string }[];
    expect(agents.map((agent) => agent.name)).toEqual(["ada", "bob"]);
    expect(agents.find((agent) => agent.name === "bob")?.status).toBe("paused");
    const [turns] = (await knex()("turns").where({ tenant_id: tenantId }).count({ n: "*" })) as {
      n: string | number;
    }[];
    expect(Number(turns?.n)).toBeGreaterThanOrEqual(3);

    // Each change happened once, whatever was replayed; nothing was provisioned again.
    expect(await audits("tenant.plan")).toBe(2);
    expect(await audits("agent.pause")).toBe(1);
    expect(await audits("tenant.delete")).toBe(1);
    expect(await audits("tenant.hold", { reason: "billing" })).toBe(1);
    expect((await tenant()).provisioned_at).toEqual(provisionedAt);
  });
});
