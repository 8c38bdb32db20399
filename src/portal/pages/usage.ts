import { z } from "zod";
import { usageReport, type UsageReport } from "../../tenants/usage.ts";
import { requireRole } from "../access.ts";
import { UsageQuery } from "../api/usage.ts";
import { barChartSvg } from "../charts.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const SlugParams = z.object({ slug: z.string().max(64) });

/** The two charts of the usage page, as SVG strings (escaped inside barChartSvg). */
export function usageCharts(report: UsageReport): { messages: string; tokens: string } {
  const days = report.days;
  const first = days[0]?.day ?? "";
  const last = days[days.length - 1]?.day ?? "";
  const limit = report.limits.messagesPerDay;
  const total = days.reduce((sum, day) => sum + day.messages, 0);
  const messages = barChartSvg({
    id: "chart-messages",
    title: `Messages per day, ${first} to ${last}`,
    description: `${String(total)} answered messages in ${String(days.length)} days${limit === null ? "; the plan has no daily limit" : `; the plan allows ${String(limit)} a day`}.`,
    points: days.map((day) => ({ label: day.day.slice(5), value: day.messages })),
    xLabel: "Day (UTC)",
    yLabel: "Messages",
    unit: "messages",
    limit,
    limitLabel: limit === null ? undefined : `daily limit ${String(limit)}`,
  });
  const tokens = barChartSvg({
    id: "chart-tokens",
    title: `Model tokens per day, ${first} to ${last}`,
    description: `Input plus output tokens per day; ${String(days.reduce((sum, day) => sum + day.inputTokens + day.outputTokens, 0))} in total.`,
    points: days.map((day) => ({
      label: day.day.slice(5),
      value: day.inputTokens + day.outputTokens,
    })),
    xLabel: "Day (UTC)",
    yLabel: "Tokens",
    unit: "tokens",
  });
  return { messages, tokens };
}

/** The usage page: the last days as charts and a table, against the plan's limits. */
export function usagePages(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/t/:slug/usage",
    { schema: { params: SlugParams, querystring: UsageQuery } },
    async (request, reply) => {
      const { tenant, role } = requireRole(request, "member");
      const report = await usageReport(deps.db, tenant, deps.config.plans, request.query.days);
      return reply.page("usage", {
        title: `Usage · ${tenant.name}`,
        tenant,
        role,
        report,
        charts: usageCharts(report),
      });
    },
  );
}
