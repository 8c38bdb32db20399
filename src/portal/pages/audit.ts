import { z } from "zod";
import { requireRole } from "../access.ts";
import { auditPage } from "../api/audit.ts";
import { PageQuery } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const SlugParams = z.object({ slug: z.string().max(64) });

/** The audit log page: admins see who did what, in the portal, the API, chat and the CLI. */
export function auditPages(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/t/:slug/audit",
    { schema: { params: SlugParams, querystring: PageQuery } },
    async (request, reply) => {
      const { tenant, role } = requireRole(request, "admin");
      const page = await auditPage(deps, tenant.id, request.query);
      return reply.page("audit", {
        title: `Audit log · ${tenant.name}`,
        tenant,
        role,
        entries: page.items,
        next:
          page.nextCursor === null
            ? null
            : `/t/${tenant.slug}/audit?${new URLSearchParams({ cursor: page.nextCursor, limit: String(request.query.limit) }).toString()}`,
        first: request.query.cursor === undefined ? null : `/t/${tenant.slug}/audit`,
      });
    },
  );
}
