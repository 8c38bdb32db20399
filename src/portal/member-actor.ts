import type { FastifyRequest } from "fastify";
import type { MemberActor } from "../tenants/members.ts";
import type { TenantAccess } from "./access.ts";

/** The acting member, for MemberService: audit identity, role, and account (none for API tokens). */
export function memberActorOf(request: FastifyRequest, access: TenantAccess): MemberActor {
  const principal = request.principal;
  return {
    actor: access.actor,
    role: access.role,
    accountId: principal?.kind === "account" ? principal.account.id : null,
  };
}
