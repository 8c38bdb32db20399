import type { FastifyRequest } from "fastify";
import type { Account } from "../accounts/types.ts";
import type { Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { AppError, notFound } from "../shared/errors.ts";
import { isUuid, type TenantId } from "../shared/ids.ts";
import { memberships, roleAtLeast, type MemberRole } from "../tenants/memberships.ts";
import type { Tenant } from "../tenants/types.ts";
import type { PortalApp, PortalDeps } from "./types.ts";

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

type TenantRef = { readonly id: string } | { readonly slug: string };

declare module "fastify" {
  interface FastifyRequest {
    /** The tenant named in the URL and the requester's role in it, once the gate checked them. */
    tenantGate: { readonly tenant: Tenant; readonly role: MemberRole } | null;
  }
}

/**
 * The tenant named in the URL, checked by the gate, if the requester has at
 * least `required` there (403 otherwise: they are a member, so the tenant's
 * existence is no secret to them). Only for routes with `:tenantId` or
 * `:slug`; anywhere else it is a programming error.
 */
export function requireRole(request: FastifyRequest, required: MemberRole): TenantAccess {
  const gate = request.tenantGate;
  if (gate === null)
    throw new AppError("internal", `route ${request.routeOptions.url ?? "?"} names no tenant`);
  if (!roleAtLeast(gate.role, required))
    throw new AppError("forbidden", `this needs the ${required} role; you are ${gate.role}`);
  return { tenant: gate.tenant, role: gate.role, actor: actorOf(request) };
}

/**
 * The tenant named by id (API) or slug (pages) and the requester's role in
 * it. A tenant the requester does not belong to is 404, exactly like one
 * that does not exist, so ids cannot be probed. API tokens act as admins of
 * their own tenant only.
 */
async function membershipIn(
  deps: PortalDeps,
  request: FastifyRequest,
  ref: TenantRef,
): Promise<{ tenant: Tenant; role: MemberRole }> {
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
  return { tenant, role };
}

/** Operator routes name tenants too, but their access is the operator check. */
const OPERATOR_PREFIXES = ["/admin", "/api/v1/admin"];

/**
 * Checks membership of the tenant named in the URL (`:tenantId` in the API,
 * `:slug` in pages) for every route, before the body is validated: another
 * tenant's id is 404 whatever the request carries, and no route can forget
 * the check. Handlers then ask requireRole for the role they need.
 */
export function registerTenantGate(app: PortalApp, deps: PortalDeps): void {
  app.decorateRequest("tenantGate", null);
  app.addHook("preValidation", async (request) => {
    const pattern = request.routeOptions.url ?? "";
    if (OPERATOR_PREFIXES.some((prefix) => pattern.startsWith(prefix))) return;
    const params = request.params as Record<string, string | undefined>;
    const ref: TenantRef | undefined =
      params.tenantId !== undefined
        ? { id: params.tenantId }
        : params.slug !== undefined
          ? { slug: params.slug }
          : undefined;
    if (ref !== undefined) request.tenantGate = await membershipIn(deps, request, ref);
  });
}
