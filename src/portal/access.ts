import type { FastifyRequest } from "fastify";
import type { Account } from "../accounts/types.ts";
import type { Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { AppError, notFound } from "../shared/errors.ts";
import { isUuid, type TenantId } from "../shared/ids.ts";
import { memberships, roleAtLeast, type MemberRole } from "../tenants/memberships.ts";
import type { Tenant } from "../tenants/types.ts";
import type { PortalDeps } from "./types.ts";

/** A request's standing in one tenant, checked. */
export interface TenantAccess {
  readonly tenant: Tenant;
  readonly role: MemberRole;
  /** Who to record in the audit log. */
  readonly actor: Actor;
}

/** The signed-in account, or 401 (pages turn it into a redirect to the login page). */
export function requireAccount(request: FastifyRequest): Account {
  const principal = request.principal;
  if (principal?.kind === "account") return principal.account;
  if (principal?.kind === "token")
    throw new AppError("forbidden", "this needs a signed-in person, not an API token");
  throw new AppError("unauthorized", "sign in first");
}

export function requireOperator(request: FastifyRequest): Account {
  const account = requireAccount(request);
  // Not 403: the admin area's existence is nobody else's business.
  if (!account.isOperator) throw notFound("page");
  return account;
}

export function actorOf(request: FastifyRequest): Actor {
  const via = request.url.startsWith("/api/") ? "api" : "portal";
  const principal = request.principal;
  if (principal?.kind === "token") return { id: `token:${principal.name}`, via };
  if (principal?.kind === "account") return { id: principal.account.email, via };
  return { id: "anonymous", via };
}

/**
 * Resolves a tenant by id (API) or slug (pages) and checks the request may
 * act in it with at least `required`. A tenant the requester does not belong
 * to is 404, exactly like one that does not exist, so ids cannot be probed.
 * API tokens act as admins of their own tenant only.
 */
export async function tenantAccess(
  deps: PortalDeps,
  request: FastifyRequest,
  ref: { readonly id: string } | { readonly slug: string },
  required: MemberRole,
): Promise<TenantAccess> {
  const principal = request.principal;
  if (principal === null) throw new AppError("unauthorized", "sign in first");
  const tenant =
    "id" in ref
      ? isUuid(ref.id)
        ? await deps.tenantRepository.findById(deps.db, ref.id as TenantId)
        : undefined
      : await deps.tenantRepository.findBySlug(deps.db, ref.slug);
  if (tenant === undefined) throw notFound("tenant");
  let role: MemberRole | undefined;
  if (principal.kind === "token") {
    role = principal.tenantId === tenant.id ? "admin" : undefined;
  } else {
    const accountId = principal.account.id;
    role = await withTenant(deps.db, tenant.id, (trx) => memberships.roleOf(trx, accountId));
  }
  if (role === undefined) throw notFound("tenant");
  if (!roleAtLeast(role, required))
    throw new AppError("forbidden", `this needs the ${required} role; you are ${role}`);
  return { tenant, role, actor: actorOf(request) };
}
