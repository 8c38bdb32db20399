import { expect } from "vitest";
import type { DatabaseKind } from "../../src/db/connect.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { FakeStripe } from "./fake-stripe.ts";
import { startPortalTest, type Browser, type PortalTest } from "./portal.ts";

export const STARTER_PRICE = "price_starter_monthly";
export const PRO_PRICE = "price_pro_monthly";

/** Plans with Stripe prices (the defaults have none): free, starter (no trial), pro (14-day trial). */
export const BILLING_PLANS = {
  free: {
    name: "Free",
    agents: 1,
    messagesPerDay: 100,
    managedTokensPerMonth: 200_000,
    storageGb: 1,
  },
  starter: {
    name: "Starter",
    agents: 3,
    messagesPerDay: 1_000,
    managedTokensPerMonth: 2_000_000,
    storageGb: 10,
    stripePriceId: STARTER_PRICE,
    billsOverage: true,
  },
  pro: {
    name: "Professional",
    agents: 10,
    messagesPerDay: 10_000,
    managedTokensPerMonth: 20_000_000,
    storageGb: 100,
    stripePriceId: PRO_PRICE,
    trialDays: 14,
    billsOverage: true,
  },
};

export interface BillingTest {
  readonly t: PortalTest;
  readonly fake: FakeStripe;
  stop(): Promise<void>;
}

/** A listening portal with billing on against a fake Stripe that delivers webhooks to it. */
export async function startBillingTest(
  database: DatabaseKind,
  billing: Record<string, unknown> = {},
): Promise<BillingTest> {
  const fake = await FakeStripe.start();
  const t = await startPortalTest({
    database,
    listen: true,
    config: { plans: BILLING_PLANS, billing: fake.billingConfig(billing) },
  });
  fake.webhookUrl = `${t.url ?? ""}/api/v1/billing/webhook`;
  return {
    t,
    fake,
    stop: async () => {
      await t.stop();
      await fake.close();
    },
  };
}

/** Polls `probe` until it returns something other than undefined (or fails after `timeoutMs`). */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits until the event is processed (not pending); returns its final status. */
export async function processed(t: PortalTest, eventId: string): Promise<string> {
  return waitFor(`event ${eventId} to be processed`, async () => {
    const row = (await t.database.knex("stripe_events").where({ id: eventId }).first("status")) as
      { status: string } | undefined;
    return row === undefined || row.status === "pending" ? undefined : row.status;
  });
}

export async function tenantRow(
  t: PortalTest,
  id: TenantId,
): Promise<{ plan: string; status: string; delete_after: Date | null }> {
  return (await t.database.knex("tenants").where({ id }).first()) as {
    plan: string;
    status: string;
    delete_after: Date | null;
  };
}

export async function subscriptionRow(
  t: PortalTest,
  tenantId: TenantId,
): Promise<Record<string, unknown> | undefined> {
  return (await t.database.knex("subscriptions").where({ tenant_id: tenantId }).first()) as
    Record<string, unknown> | undefined;
}

export async function holdsOf(t: PortalTest, tenantId: TenantId): Promise<string[]> {
  return (await t.database
    .knex("tenant_holds")
    .where({ tenant_id: tenantId })
    .pluck("reason")) as string[];
}

export async function auditCount(
  t: PortalTest,
  tenantId: TenantId,
  action: string,
): Promise<number> {
  const [row] = (await t.database
    .knex("audit_log")
    .where({ tenant_id: tenantId, action })
    .count({ n: "*" })) as { n: string | number }[];
  return Number(row?.n ?? 0);
}

/**
 * Upgrades a tenant as a person would: checkout through the API, pays on
 * "Stripe's page" (the fake completes the session), Stripe sends
 * checkout.session.completed. Returns the subscription id once processed.
 */
export async function subscribe(
  b: BillingTest,
  owner: Browser,
  tenantId: TenantId,
  plan: string,
): Promise<string> {
  const response = await owner.request(`/api/v1/tenants/${tenantId}/billing/checkout`, {
    json: { plan },
  });
  expect(response.statusCode, response.body).toBe(200);
  const session = b.fake.lastCheckoutSession();
  expect(session.client_reference_id).toBe(tenantId);
  const { subscription } = b.fake.completeCheckout(session.id);
  const delivery = await b.fake.send("checkout.session.completed", session);
  expect(delivery.status, delivery.body).toBe(200);
  expect(await processed(b.t, delivery.eventId)).toBe("done");
  return subscription.id;
}
