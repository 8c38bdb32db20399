import { z } from "zod";
import { tenantDeletion } from "../../tenants/deletion.ts";
import { actorOf, requireRole } from "../access.ts";
import { operatorsOnly } from "../admin-views.ts";
import { checkSlugConfirmation, operatorTenant } from "../api/tenant-deletion.ts";
import { FormBody, formAction } from "../forms.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const SlugParams = z.object({ slug: z.string().max(64) });

/** The tenant's settings page: for now, deleting the tenant (owners) and restoring it (owners, operators). */
export function settingsPages(app: PortalApp, deps: PortalDeps): void {
  const retentionDays = deps.config.portal.deletionRetentionDays;

  app.get("/t/:slug/settings", { schema: { params: SlugParams } }, async (request, reply) => {
    const { tenant, role } = requireRole(request, "member");
    return reply.page("settings", {
      title: `Settings · ${tenant.name}`,
      tenant,
      role,
      retentionDays,
    });
  });

  app.post(
    "/t/:slug/settings/delete",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, role, actor } = requireRole(request, "owner");
      return formAction(
        reply,
        "settings",
        { title: `Settings · ${tenant.name}`, tenant, role, retentionDays },
        async () => {
          checkSlugConfirmation(tenant, request.body.confirm);
          const { deleteAfter } = await tenantDeletion.schedule(
            deps.db,
            tenant.id,
            retentionDays,
            actor,
          );
          return reply.redirectWithFlash(
            `/t/${tenant.slug}/settings`,
            `${tenant.name} is suspended and will be erased after ${deleteAfter.toISOString().slice(0, 10)}.`,
          );
        },
      );
    },
  );

  app.post(
    "/t/:slug/settings/restore",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "owner");
      const status = await tenantDeletion.cancel(deps.db, tenant.id, actor);
      return reply.redirectWithFlash(
        `/t/${tenant.slug}/settings`,
        `${tenant.name} is restored (${status}).`,
      );
    },
  );

  // Operators restore from the admin area: they need not be members of the tenant.
  app.post(
    "/admin/tenants/:tenantId/restore",
    {
      onRequest: operatorsOnly,
      schema: { params: z.object({ tenantId: z.string().max(64) }), body: FormBody },
    },
    async (request, reply) => {
      const tenant = await operatorTenant(deps, request, request.params.tenantId);
      const status = await tenantDeletion.cancel(deps.db, tenant.id, actorOf(request));
      return reply.redirectWithFlash(
        `/admin/tenants/${tenant.id}`,
        `${tenant.name} is restored (${status}).`,
      );
    },
  );
}
