import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { roleAtLeast } from "../../tenants/memberships.ts";
import { actorOf, requireAccount, requireRole, type TenantAccess } from "../access.ts";
import { FormBody, formAction } from "../forms.ts";
import { memberActorOf } from "../member-actor.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { SlugParams } from "./tenants.ts";

/** The page shows this many members and invitations; the API pages through all of them. */
const MEMBERS_SHOWN = 200;
const MemberParams = SlugParams.extend({ accountId: z.string().max(64) });
const InvitationParams = SlugParams.extend({ invitationId: z.string().max(64) });
const TokenQuery = z.object({ token: z.string().max(128).default("") });

/** The members page and its actions, and the page that accepts an invitation. */
export function memberPages(app: PortalApp, deps: PortalDeps): void {
  const pageData = async (request: FastifyRequest, checked: TenantAccess) => {
    const { tenant, role } = checked;
    const account = requireAccount(request);
    const all = { limit: MEMBERS_SHOWN, offset: 0 };
    const members = await deps.members.list(tenant.id, all);
    const isAdmin = roleAtLeast(role, "admin");
    return {
      title: `Members · ${tenant.name}`,
      tenant,
      role,
      members,
      me: members.find((member) => member.accountId === account.id),
      isAdmin,
      invitations: isAdmin ? await deps.members.listInvitations(tenant.id, all) : [],
      now: Date.now(),
      inviteEmail: "",
      inviteRole: "member",
      matrixUserId: "",
    };
  };

  /** Checks access, then runs a form action that re-renders the members page on a 4xx. */
  const action = async (
    request: FastifyRequest<{ Params: z.infer<typeof SlugParams> }>,
    reply: FastifyReply,
    required: "admin" | "member",
    typed: Record<string, string>,
    run: (checked: TenantAccess) => Promise<FastifyReply>,
  ) => {
    const checked = requireRole(request, required);
    const data = { ...(await pageData(request, checked)), ...typed };
    return formAction(reply, "members", data, () => run(checked));
  };
  const back = (slug: string) => `/t/${slug}/members`;

  app.get("/t/:slug/members", { schema: { params: SlugParams } }, async (request, reply) => {
    const checked = requireRole(request, "member");
    const data = await pageData(request, checked);
    return reply.page("members", { ...data, matrixUserId: data.me?.matrixUserId ?? "" });
  });

  app.post(
    "/t/:slug/members/invite",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const { email = "", role = "" } = request.body;
      return action(
        request,
        reply,
        "admin",
        { inviteEmail: email, inviteRole: role },
        async (checked) => {
          const invitation = await deps.members.invite(
            checked.tenant,
            { email, role },
            memberActorOf(request, checked),
          );
          return reply.redirectWithFlash(
            back(checked.tenant.slug),
            `We mailed an invitation to ${invitation.email}.`,
          );
        },
      );
    },
  );

  app.post(
    "/t/:slug/members/:accountId/role",
    { schema: { params: MemberParams, body: FormBody } },
    async (request, reply) => {
      const { role = "" } = request.body;
      return action(request, reply, "admin", {}, async (checked) => {
        const changed = await deps.members.changeRole(
          checked.tenant.id,
          request.params.accountId,
          { role },
          memberActorOf(request, checked),
        );
        return reply.redirectWithFlash(back(checked.tenant.slug), `The role is now ${changed}.`);
      });
    },
  );

  app.post(
    "/t/:slug/members/:accountId/remove",
    { schema: { params: MemberParams, body: FormBody } },
    async (request, reply) =>
      action(request, reply, "member", {}, async (checked) => {
        const self = requireAccount(request).id === request.params.accountId;
        await deps.members.remove(
          checked.tenant.id,
          request.params.accountId,
          memberActorOf(request, checked),
        );
        return self
          ? reply.redirectWithFlash("/", `You left ${checked.tenant.name}.`)
          : reply.redirectWithFlash(back(checked.tenant.slug), "The member is removed.");
      }),
  );

  app.post(
    "/t/:slug/members/matrix-id",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const { matrixUserId = "" } = request.body;
      return action(request, reply, "member", { matrixUserId }, async (checked) => {
        const linked = await deps.members.linkMatrixId(
          checked.tenant.id,
          requireAccount(request).id,
          { matrixUserId },
          checked.actor,
        );
        return reply.redirectWithFlash(back(checked.tenant.slug), `${linked} is linked.`);
      });
    },
  );

  app.post(
    "/t/:slug/members/matrix-id/remove",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) =>
      action(request, reply, "member", {}, async (checked) => {
        await deps.members.unlinkMatrixId(
          checked.tenant.id,
          requireAccount(request).id,
          checked.actor,
        );
        return reply.redirectWithFlash(back(checked.tenant.slug), "Your Matrix ID is unlinked.");
      }),
  );

  app.post(
    "/t/:slug/invitations/:invitationId/revoke",
    { schema: { params: InvitationParams, body: FormBody } },
    async (request, reply) =>
      action(request, reply, "admin", {}, async (checked) => {
        await deps.members.revokeInvitation(
          checked.tenant.id,
          request.params.invitationId,
          checked.actor,
        );
        return reply.redirectWithFlash(back(checked.tenant.slug), "The invitation is withdrawn.");
      }),
  );

  app.get("/invitations/accept", { schema: { querystring: TokenQuery } }, async (request, reply) =>
    formAction(reply, "error", { title: "Invitation", status: 400 }, async () => {
      const { token } = request.query;
      const preview = await deps.members.previewInvitation(token);
      const principal = request.principal;
      return reply.page("members-invitation", {
        title: `Invitation to ${preview.tenant.name}`,
        preview,
        token,
        next: `/invitations/accept?token=${encodeURIComponent(token)}`,
        signedInAs: principal?.kind === "account" ? principal.account.email : null,
      });
    }),
  );

  app.post("/invitations/accept", { schema: { body: FormBody } }, async (request, reply) => {
    const account = requireAccount(request);
    const { token = "" } = request.body;
    return formAction(reply, "error", { title: "Invitation", status: 400 }, async () => {
      const { tenant } = await deps.members.accept(account, token, actorOf(request));
      return reply.redirectWithFlash(`/t/${tenant.slug}`, `Welcome to ${tenant.name}.`);
    });
  });
}
