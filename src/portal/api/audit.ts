import { z } from "zod";
import { readAuditPage, type AuditRecord } from "../../audit/audit-log.ts";
import type { TenantId } from "../../shared/ids.ts";
import { requireRole } from "../access.ts";
import { PageQuery, decodeCursor, pageOf, toPage, type Page } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

export const AuditEntryView = z.object({
  id: z.number().int(),
  actor: z
    .string()
    .describe("an email (portal/API), token:<name>, a Matrix ID (chat) or operator (CLI)"),
  action: z.string().describe('dotted verb, e.g. "agent.create"'),
  target: z.string().nullable(),
  via: z.enum(["portal", "api", "chat", "cli"]),
  roomId: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  createdAt: z.string().describe("ISO 8601"),
});
export type AuditEntryView = z.infer<typeof AuditEntryView>;

export function auditEntryView(record: AuditRecord): AuditEntryView {
  return {
    id: record.id,
    actor: record.actor,
    action: record.action,
    target: record.target ?? null,
    via: record.via,
    roomId: record.roomId ?? null,
    details: { ...record.details },
    createdAt: record.createdAt.toISOString(),
  };
}

/** A page of a tenant's audit log, newest first; the cursor is the last id shown. */
export async function auditPage(
  deps: PortalDeps,
  tenantId: TenantId,
  query: PageQuery,
): Promise<Page<AuditEntryView>> {
  const beforeId = decodeCursor(query.cursor, "number");
  const rows = await readAuditPage(deps.db, tenantId, { limit: query.limit + 1, beforeId });
  return toPage(rows.map(auditEntryView), query.limit, (row) => row.id);
}

/** The audit log over JSON: admins only, like the page. */
export function auditApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants/:tenantId/audit",
    {
      schema: {
        tags: ["audit"],
        summary:
          "The tenant's audit log, newest first: who did what, through which surface (admins)",
        params: TenantParams,
        querystring: PageQuery,
        response: { 200: pageOf(AuditEntryView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      const page = await auditPage(deps, tenant.id, request.query);
      return { items: [...page.items], nextCursor: page.nextCursor };
    },
  );
}
