import { z } from "zod";
import type { PastDueBanner } from "../../billing/service.ts";
import { requireRole } from "../access.ts";
import { FormBody, formAction } from "../forms.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const SlugParams = z.object({ slug: z.string().max(64) });
const BillingQuery = z.object({ checkout: z.enum(["success", "cancelled"]).optional() });

declare module "fastify" {
  interface FastifyRequest {
    /** Set on tenant pages when the tenant's payment is overdue; the layout shows the banner. */
    pastDueBanner: PastDueBanner | null;
  }
}

/**
 * The billing page (owners and admins): plan and limits, the subscription,
 * upgrade through Stripe Checkout and the Stripe customer portal. Also the
 * past-due banner every tenant page shows while a payment is overdue.
 */
export function billingPages(app: PortalApp, deps: PortalDeps): void {
  const billing = deps.billing;

  app.decorateRequest("pastDueBanner", null);
  if (billing.enabled)
    app.addHook("preHandler", async (request) => {
      const gate = request.tenantGate;
      if (gate === null || request.method !== "GET" || !request.url.startsWith("/t/")) return;
      request.pastDueBanner = await billing.banner(gate.tenant);
    });

  const pageData = async (request: Parameters<typeof requireRole>[0]) => {
    const { tenant, role } = requireRole(request, "admin");
    return {
      title: `Billing · ${tenant.name}`,
      tenant,
      role,
      overview: await billing.overview(tenant),
    };
  };

  app.get(
    "/t/:slug/billing",
    { schema: { params: SlugParams, querystring: BillingQuery } },
    async (request, reply) => {
      const data = await pageData(request);
      return reply.page("billing", { ...data, checkout: request.query.checkout ?? null });
    },
  );

  app.post(
    "/t/:slug/billing/checkout",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const data = await pageData(request);
      const email = request.principal?.kind === "account" ? request.principal.account.email : null;
      return formAction(reply, "billing", { ...data, checkout: null }, async () =>
        reply.redirect(await billing.checkout(data.tenant, request.body.plan, email), 303),
      );
    },
  );

  app.post(
    "/t/:slug/billing/portal",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const data = await pageData(request);
      return formAction(reply, "billing", { ...data, checkout: null }, async () =>
        reply.redirect(await billing.portalSession(data.tenant), 303),
      );
    },
  );
}
