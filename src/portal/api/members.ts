import { z } from "zod";
import type { Invitation } from "../../tenants/invitations.ts";
import type { Member } from "../../tenants/members.ts";
import { actorOf, requireAccount, requireRole } from "../access.ts";
import { memberActorOf } from "../member-actor.ts";
import { offsetOf, offsetPage } from "../offset-pages.ts";
import { PageQuery, pageOf } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantIdParams } from "./tenants.ts";

const Role = z.enum(["owner", "admin", "member"]);
const MemberView = z.object({
  accountId: z.string(),
  email: z.string(),
  displayName: z.string(),
  role: Role,
  matrixUserId: z.string().nullable(),
  joinedAt: z.string(),
});
const InvitationView = z.object({
  id: z.string(),
  email: z.string(),
  role: z.enum(["admin", "member"]),
  expiresAt: z.string(),
  expired: z.boolean(),
  createdAt: z.string(),
});
const MemberParams = TenantIdParams.extend({
  accountId: z.string().max(64).describe('an account id, or "me"'),
});
const NoContent = { 204: z.null() };

const memberView = (member: Member): z.infer<typeof MemberView> => ({
  ...member,
  joinedAt: member.joinedAt.toISOString(),
});

export const invitationView = (invitation: Invitation): z.infer<typeof InvitationView> => ({
  id: invitation.id,
  email: invitation.email,
  role: invitation.role,
  expiresAt: invitation.expiresAt.toISOString(),
  expired: invitation.expiresAt.getTime() <= Date.now(),
  createdAt: invitation.createdAt.toISOString(),
});

/** Members, roles, linked Matrix IDs and invitations over JSON: the same service as the members page. */
export function memberApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants/:tenantId/members",
    {
      schema: {
        tags: ["members"],
        summary: "The tenant's members, oldest first",
        params: TenantIdParams,
        querystring: PageQuery,
        response: { 200: pageOf(MemberView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      const rows = await deps.members.list(tenant.id, {
        offset: offsetOf(request.query),
        limit: request.query.limit + 1,
      });
      const page = offsetPage(rows, request.query);
      return { ...page, items: page.items.map(memberView) };
    },
  );

  app.patch(
    "/api/v1/tenants/:tenantId/members/:accountId",
    {
      schema: {
        tags: ["members"],
        summary:
          "Change a member's role (admins; only owners make or unmake owners; a tenant always keeps an owner)",
        params: MemberParams,
        body: z.strictObject({ role: z.string().max(16) }),
        response: { 200: z.object({ accountId: z.string(), role: Role }) },
      },
    },
    async (request) => {
      const checked = requireRole(request, "admin");
      const accountId = selfOrId(request, request.params.accountId);
      const role = await deps.members.changeRole(
        checked.tenant.id,
        accountId,
        request.body,
        memberActorOf(request, checked),
      );
      return { accountId, role };
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/members/:accountId",
    {
      schema: {
        tags: ["members"],
        summary:
          'Remove a member (admins; owners only by owners), or leave with "me"; the last owner cannot go',
        params: MemberParams,
        response: NoContent,
      },
    },
    async (request, reply) => {
      const checked = requireRole(request, "member");
      await deps.members.remove(
        checked.tenant.id,
        selfOrId(request, request.params.accountId),
        memberActorOf(request, checked),
      );
      return reply.code(204).send(null);
    },
  );

  app.put(
    "/api/v1/tenants/:tenantId/members/me/matrix-id",
    {
      schema: {
        tags: ["members"],
        summary:
          "Link your own Matrix ID (signed-in members only); for owners and admins it also administers the tenant by chat",
        params: TenantIdParams,
        body: z.strictObject({ matrixUserId: z.string().max(255) }),
        response: { 200: z.object({ matrixUserId: z.string() }) },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "member");
      const account = requireAccount(request);
      const matrixUserId = await deps.members.linkMatrixId(
        tenant.id,
        account.id,
        request.body,
        actor,
      );
      return { matrixUserId };
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/members/me/matrix-id",
    {
      schema: {
        tags: ["members"],
        summary: "Unlink your own Matrix ID (and its chat admin rights from being a member)",
        params: TenantIdParams,
        response: NoContent,
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "member");
      const account = requireAccount(request);
      await deps.members.unlinkMatrixId(tenant.id, account.id, actor);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/invitations",
    {
      schema: {
        tags: ["members"],
        summary: "Pending invitations, newest first, expired ones included (admins)",
        params: TenantIdParams,
        querystring: PageQuery,
        response: { 200: pageOf(InvitationView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      const rows = await deps.members.listInvitations(tenant.id, {
        offset: offsetOf(request.query),
        limit: request.query.limit + 1,
      });
      const page = offsetPage(rows, request.query);
      return { ...page, items: page.items.map(invitationView) };
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/invitations",
    {
      schema: {
        tags: ["members"],
        summary:
          "Invite an email address as admin or member (admins): a link valid 7 days is mailed; inviting again replaces it",
        params: TenantIdParams,
        body: z.strictObject({ email: z.string().max(254), role: z.string().max(16) }),
        response: { 201: InvitationView },
      },
    },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const invitation = await deps.members.invite(
        checked.tenant,
        request.body,
        memberActorOf(request, checked),
      );
      return reply.code(201).send(invitationView(invitation));
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/invitations/:invitationId",
    {
      schema: {
        tags: ["members"],
        summary: "Withdraw a pending invitation (admins); its link stops working",
        params: TenantIdParams.extend({ invitationId: z.string().max(64) }),
        response: NoContent,
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      await deps.members.revokeInvitation(tenant.id, request.params.invitationId, actor);
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/api/v1/invitations/accept",
    {
      schema: {
        tags: ["members"],
        summary:
          "Accept an invitation with the mailed token; the signed-in account's email must be the invited one",
        body: z.strictObject({ token: z.string().min(1).max(128) }),
        response: {
          200: z.object({
            tenant: z.object({ id: z.string(), slug: z.string(), name: z.string() }),
            role: Role,
          }),
        },
      },
    },
    async (request) => {
      const account = requireAccount(request);
      const { tenant, role } = await deps.members.accept(
        account,
        request.body.token,
        actorOf(request),
      );
      return { tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name }, role };
    },
  );
}

/** "me" names the caller's own membership (not for API tokens, which are nobody's). */
function selfOrId(request: Parameters<typeof requireAccount>[0], accountId: string): string {
  return accountId === "me" ? requireAccount(request).id : accountId;
}
