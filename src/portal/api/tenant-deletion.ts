import type { FastifyRequest } from "fastify";
import { z } from "zod";
import { badRequest, notFound } from "../../shared/errors.ts";
import { isUuid, type TenantId } from "../../shared/ids.ts";
import { tenantDeletion } from "../../tenants/deletion.ts";
import type { Tenant } from "../../tenants/types.ts";
import { actorOf, tenantAccess, type TenantAccess } from "../access.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

/**
 * Who may restore a tenant scheduled for deletion: its owners, and platform
 * operators (who need not be members). Anyone else gets what tenantAccess
 * gives them (404 for strangers).
 */
export async function restoreAccess(
  deps: PortalDeps,
  request: FastifyRequest,
  ref: { readonly id: string } | { readonly slug: string },
): Promise<Pick<TenantAccess, "tenant" | "actor">> {
  const principal = request.principal;
  if (principal?.kind === "account" && principal.account.isOperator) {
    const tenant =
      "id" in ref
        ? isUuid(ref.id)
          ? await deps.tenantRepository.findById(deps.db, ref.id as TenantId)
          : undefined
        : await deps.tenantRepository.findBySlug(deps.db, ref.slug);
    if (tenant === undefined) throw notFound("tenant");
    return { tenant, actor: actorOf(request) };
  }
  return tenantAccess(deps, request, ref, "owner");
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
      const { tenant, actor } = await tenantAccess(
        deps,
        request,
        { id: request.params.tenantId },
        "owner",
      );
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
        summary:
          "Take back a scheduled deletion (owners and operators), within the retention period",
        params: TenantParams,
        response: { 200: z.object({ status: z.enum(["provisioning", "active", "suspended"]) }) },
      },
    },
    async (request) => {
      const { tenant, actor } = await restoreAccess(deps, request, { id: request.params.tenantId });
      return { status: await tenantDeletion.cancel(deps.db, tenant.id, actor) };
    },
  );
}
