import { z } from "zod";
import { WebhookRejected } from "../../billing/types.ts";
import { badRequest } from "../../shared/errors.ts";
import { requireAccount, requireRole } from "../access.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

/** Stripe's events are small; anything bigger is not from Stripe. */
const WEBHOOK_BODY_LIMIT_BYTES = 512 * 1024;

const Limits = z.object({
  agents: z.number().int().nullable(),
  messagesPerDay: z.number().int().nullable(),
  managedTokensPerMonth: z.number().int().nullable(),
  storageGb: z.number().nullable(),
  bridges: z.number().int().nullable(),
  requiresOwnKey: z.boolean(),
  billsOverage: z.boolean(),
});

const BillingView = z.object({
  enabled: z.boolean().describe("false: billing is off; an operator assigns plans"),
  plan: z.object({
    id: z.string(),
    name: z.string(),
    limits: Limits.nullable().describe("null when the plan is no longer configured"),
  }),
  subscription: z
    .object({
      status: z
        .string()
        .describe(
          "Stripe's status: trialing, active, past_due, unpaid, canceled, paused…; none before any",
        ),
      priceId: z.string().nullable(),
      currentPeriodEnd: z.string().nullable(),
      cancelAtPeriodEnd: z.boolean(),
      pastDueSince: z.string().nullable(),
      suspendAfter: z
        .string()
        .nullable()
        .describe("when a past-due tenant is suspended unless it pays"),
    })
    .nullable(),
  purchasable: z.array(z.object({ id: z.string(), name: z.string(), trialDays: z.number().int() })),
});

const CheckoutBody = z.object({ plan: z.string().trim().min(1).max(32) });
const UrlView = z.object({ url: z.string() });

const iso = (date: Date | null): string | null => (date === null ? null : date.toISOString());

/** Billing over JSON (owners and admins), and the Stripe webhook (only when billing is on). */
export function billingApi(app: PortalApp, deps: PortalDeps): void {
  const billing = deps.billing;

  app.get(
    "/api/v1/tenants/:tenantId/billing",
    {
      schema: {
        tags: ["billing"],
        summary: "The tenant's plan and limits, its Stripe subscription, and the plans on sale",
        params: TenantParams,
        response: { 200: BillingView },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      const overview = await billing.overview(tenant);
      const limits = overview.plan.limits;
      const subscription = overview.subscription;
      return {
        enabled: overview.enabled,
        plan: {
          id: overview.plan.id,
          name: overview.plan.name,
          limits:
            limits === null
              ? null
              : {
                  agents: limits.agents,
                  messagesPerDay: limits.messagesPerDay,
                  managedTokensPerMonth: limits.managedTokensPerMonth,
                  storageGb: limits.storageGb,
                  bridges: limits.bridges,
                  requiresOwnKey: limits.requiresOwnKey,
                  billsOverage: limits.billsOverage,
                },
        },
        subscription:
          subscription === null
            ? null
            : {
                status: subscription.status,
                priceId: subscription.priceId,
                currentPeriodEnd: iso(subscription.currentPeriodEnd),
                cancelAtPeriodEnd: subscription.cancelAtPeriodEnd,
                pastDueSince: iso(subscription.pastDueSince),
                suspendAfter: iso(subscription.suspendAfter),
              },
        purchasable: [...overview.purchasable],
      };
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/billing/checkout",
    {
      schema: {
        tags: ["billing"],
        summary: "Start a Stripe Checkout for a plan; send the person to the returned URL",
        description:
          "409 when billing is off or the tenant already has a subscription (change it in the customer portal).",
        params: TenantParams,
        body: CheckoutBody,
        response: { 200: UrlView },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      const email = request.principal?.kind === "account" ? requireAccount(request).email : null;
      return { url: await billing.checkout(tenant, request.body.plan, email) };
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/billing/portal",
    {
      schema: {
        tags: ["billing"],
        summary:
          "Open the Stripe customer portal (payment methods, invoices, plan changes, cancellation)",
        params: TenantParams,
        response: { 200: UrlView },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      return { url: await billing.portalSession(tenant) };
    },
  );

  if (!billing.enabled) return;
  // The signature covers the exact bytes Stripe sent, so this route alone keeps the body raw.
  void app.register((scope, _options, registered) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      "*",
      { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT_BYTES },
      (_request, body, done) => {
        done(null, body);
      },
    );
    scope.post(
      "/api/v1/billing/webhook",
      {
        config: { csrf: false },
        schema: {
          tags: ["billing"],
          summary: "Stripe webhook endpoint (signed by Stripe; not for API clients)",
          response: { 200: z.object({ received: z.literal(true), duplicate: z.boolean() }) },
        },
      },
      async (request) => {
        const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        const header = request.headers["stripe-signature"];
        try {
          const fresh = await billing.receiveWebhook(
            raw,
            typeof header === "string" ? header : undefined,
          );
          return { received: true as const, duplicate: !fresh };
        } catch (error) {
          if (error instanceof WebhookRejected) {
            request.log.warn({ reason: error.message }, "Stripe webhook refused");
            throw badRequest(`webhook refused: ${error.message}`);
          }
          throw error;
        }
      },
    );
    registered();
  });
}
