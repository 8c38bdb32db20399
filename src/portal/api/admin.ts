import { z } from "zod";
import { readAuditPage } from "../../audit/audit-log.ts";
import { actorOf } from "../access.ts";
import { AdminTenantView, adminServices, operatorsOnly, withHealth } from "../admin-views.ts";
import { PageQuery, decodeCursor, pageOf, toPage } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { AuditEntryView, auditEntryView } from "./audit.ts";
import { TenantParams } from "./usage.ts";

const OperationView = z.object({
  tenant: AdminTenantView,
  changed: z.boolean().describe("false when nothing needed to change"),
});

/**
 * The operators' admin area over JSON (signed-in operators only: for
 * anyone else these routes do not exist, 404).
 */
export function adminApi(app: PortalApp, deps: PortalDeps): void {
  const { operations, health } = adminServices(deps);
  const tags = ["admin"];

  app.get(
    "/api/v1/admin/tenants",
    {
      onRequest: operatorsOnly,
      schema: {
        tags,
        summary: "Every tenant with plan, status, members, messages today and homeserver health",
        querystring: PageQuery,
        response: { 200: pageOf(AdminTenantView) },
      },
    },
    async (request) => {
      const afterSlug = decodeCursor(request.query.cursor, "string");
      const rows = await operations.list({ limit: request.query.limit + 1, afterSlug });
      const page = toPage(rows, request.query.limit, (row) => row.slug);
      return { items: await withHealth(health, page.items), nextCursor: page.nextCursor };
    },
  );

  app.get(
    "/api/v1/admin/tenants/:tenantId",
    {
      onRequest: operatorsOnly,
      schema: {
        tags,
        summary: "One tenant as operators see it",
        params: TenantParams,
        response: { 200: AdminTenantView },
      },
    },
    async (request) => {
      const [view] = await withHealth(health, [await operations.get(request.params.tenantId)]);
      return view as AdminTenantView;
    },
  );

  app.get(
    "/api/v1/admin/tenants/:tenantId/audit",
    {
      onRequest: operatorsOnly,
      schema: {
        tags,
        summary: "Any tenant's audit log, newest first",
        params: TenantParams,
        querystring: PageQuery,
        response: { 200: pageOf(AuditEntryView) },
      },
    },
    async (request) => {
      const tenant = await operations.get(request.params.tenantId);
      const beforeId = decodeCursor(request.query.cursor, "number");
      const rows = await readAuditPage(deps.db, tenant.id, {
        limit: request.query.limit + 1,
        beforeId,
      });
      const page = toPage(rows.map(auditEntryView), request.query.limit, (row) => row.id);
      return { items: [...page.items], nextCursor: page.nextCursor };
    },
  );

  const actions = [
    [
      "suspend",
      "Suspend: the tenant's agents stop answering; data is kept (409 if already suspended)",
    ],
    ["resume", "Lift a suspension (409 if the tenant is not suspended)"],
    [
      "reprovision",
      "Ask the provisioner for a fresh pass over the tenant's homeserver (the provisioner acts on it when it runs)",
    ],
  ] as const;
  for (const [action, summary] of actions) {
    app.post(
      `/api/v1/admin/tenants/:tenantId/${action}`,
      {
        onRequest: operatorsOnly,
        schema: { tags, summary, params: TenantParams, response: { 200: OperationView } },
      },
      async (request) => {
        const result = await operations[action](request.params.tenantId, actorOf(request));
        const [tenant] = await withHealth(health, [result.tenant]);
        return { tenant: tenant as AdminTenantView, changed: result.changed };
      },
    );
  }

  app.put(
    "/api/v1/admin/tenants/:tenantId/plan",
    {
      onRequest: operatorsOnly,
      schema: {
        tags,
        summary: "Put the tenant on a plan from the configuration (billing-off mode)",
        params: TenantParams,
        body: z.strictObject({ plan: z.string().max(32) }),
        response: { 200: OperationView },
      },
    },
    async (request) => {
      const result = await operations.assignPlan(
        request.params.tenantId,
        request.body.plan,
        actorOf(request),
      );
      const [tenant] = await withHealth(health, [result.tenant]);
      return { tenant: tenant as AdminTenantView, changed: result.changed };
    },
  );
}
