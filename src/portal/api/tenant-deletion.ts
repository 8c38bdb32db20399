import type { FastifyRequest } from "fastify";
import { z } from "zod";
import { badRequest, notFound } from "../../shared/errors.ts";
import { isUuid, type TenantId } from "../../shared/ids.ts";
import { tenantDeletion } from "../../tenants/deletion.ts";
import type { Tenant } from "../../tenants/types.ts";
import { actorOf, requireOperator, requireRole } from "../access.ts";
import { operatorsOnly } from "../admin-views.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

/**
 * The tenant an operator names by id in the admin area (operators need not
 * be members; everyone else gets 404, as for the admin area itself).
 */
export async function operatorTenant(
  deps: PortalDeps,
  request: FastifyRequest,
  tenantId: string,
): Promise<Tenant> {
  requireOperator(request);
  const tenant = isUuid(tenantId)
    ? await deps.tenantRepository.findById(deps.db, tenantId as TenantId)
    : undefined;
  if (tenant === undefined) throw notFound("tenant");
  return tenant;
}

/** The owner typed the slug: deleting a tenant is never one careless click. */
export function checkSlugConfirmation(tenant: Tenant, typed: string | undefined): void {
  if (typed === undefined || typed.trim() === "")
    throw badRequest(`confirm: type the tenant's slug (${tenant.slug}) to confirm`);
  if (typed.trim() !== tenant.slug)
    throw badRequest(
      `confirm: "${typed.trim().slice(0, 64)}" is not this tenant's slug (${tenant.slug})`,
    );
}

const RestoredView = z.object({ status: z.enum(["provisioning", "active", "suspended"]) });

/** Deleting a tenant over JSON, and taking it back within the retention period. */
export function tenantDeletionApi(app: PortalApp, deps: PortalDeps): void {
  app.delete(
    "/api/v1/tenants/:tenantId",
    {
      schema: {
        tags: ["tenants"],
        summary:
          "Delete the tenant (owners): agents stop at once; the data is erased after the retention period",
        description:
          "Pass ?confirm=<the tenant's slug>. The tenant is suspended now and erased after portal.deletionRetentionDays days; until then an owner or an operator can restore it.",
        params: TenantParams,
        querystring: z.object({ confirm: z.string().max(64).optional() }),
        response: { 202: z.object({ status: z.literal("suspended"), deleteAfter: z.string() }) },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "owner");
      checkSlugConfirmation(tenant, request.query.confirm);
      const scheduled = await tenantDeletion.schedule(
        deps.db,
        tenant.id,
        deps.config.portal.deletionRetentionDays,
        actor,
      );
      return reply
        .code(202)
        .send({ status: "suspended" as const, deleteAfter: scheduled.deleteAfter.toISOString() });
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/restore",
    {
      schema: {
        tags: ["tenants"],
        summary: "Take back a scheduled deletion (owners), within the retention period",
        params: TenantParams,
        response: { 200: RestoredView },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "owner");
      return { status: await tenantDeletion.cancel(deps.db, tenant.id, actor) };
    },
  );

  app.post(
    "/api/v1/admin/tenants/:tenantId/restore",
    {
      // Like every admin route: an API token or a non-operator gets a plain 404, not a hint.
      onRequest: operatorsOnly,
      schema: {
        tags: ["admin"],
        summary: "Take back a tenant's scheduled deletion (operators), within the retention period",
        params: TenantParams,
        response: { 200: RestoredView },
      },
    },
    async (request) => {
      const tenant = await operatorTenant(deps, request, request.params.tenantId);
      return { status: await tenantDeletion.cancel(deps.db, tenant.id, actorOf(request)) };
    },
  );
}
