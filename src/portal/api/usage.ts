import { z } from "zod";
import { USAGE_DAYS_DEFAULT, USAGE_DAYS_MAX, usageReport } from "../../tenants/usage.ts";
import { requireRole } from "../access.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

export const TenantParams = z.object({ tenantId: z.string().max(64) });
export const UsageQuery = z.object({
  days: z.coerce.number().int().min(1).max(USAGE_DAYS_MAX).default(USAGE_DAYS_DEFAULT),
});

const Totals = z.object({
  messages: z.number().int(),
  inputTokens: z.number().int(),
  outputTokens: z.number().int(),
});
const UsageView = z.object({
  plan: z.object({
    id: z.string(),
    name: z.string(),
    known: z.boolean().describe("false when the plan is no longer configured (limits unknown)"),
    messagesPerDay: z.number().int().nullable().describe("null: unlimited"),
    managedTokensPerMonth: z.number().int().nullable().describe("null: unlimited"),
    agents: z.number().int().nullable().describe("null: unlimited"),
  }),
  today: Totals,
  month: Totals,
  agentCount: z.number().int(),
  days: z.array(Totals.extend({ day: z.string().describe("YYYY-MM-DD, UTC") })),
});

/** Usage over JSON: the same report as the usage page. */
export function usageApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants/:tenantId/usage",
    {
      schema: {
        tags: ["usage"],
        summary:
          "Messages and tokens per UTC day (zero-filled, oldest first), today and this month, against the plan's limits (shown, not enforced)",
        params: TenantParams,
        querystring: UsageQuery,
        response: { 200: UsageView },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      const report = await usageReport(deps.db, tenant, deps.config.plans, request.query.days);
      const { planId, planName, ...limits } = report.limits;
      return {
        plan: { id: planId, name: planName, ...limits },
        today: report.today,
        month: report.month,
        agentCount: report.agentCount,
        days: [...report.days],
      };
    },
  );
}
