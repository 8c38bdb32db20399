import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { MAX_SEARCH_CHARS } from "../../memory/service.ts";
import { badRequest } from "../../shared/errors.ts";
import type { Tenant } from "../../tenants/types.ts";
import { requireRole, type TenantAccess } from "../access.ts";
import {
  exportFileName,
  factView,
  forgetFactOrNotFound,
  linkIdentityOf,
  peoplePage,
  personWithFacts,
  unlinkIdentityOf,
} from "../api/memory.ts";
import { FormBody, formAction } from "../forms.ts";
import { PageQuery } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const SlugParams = z.object({ slug: z.string().max(64) });
const PersonPageParams = SlugParams.extend({ personId: z.string().max(64) });
const FactPageParams = SlugParams.extend({ factId: z.string().max(64) });
const MemoryQuery = PageQuery.extend({ q: z.string().max(MAX_SEARCH_CHARS).optional() });
const SEARCH_RESULTS = 50;
/** The facts a re-rendered person page shows under a refused form: the newest page. */
const FIRST_FACTS: PageQuery = PageQuery.parse({});

function pageLink(path: string, cursor: string | null, limit: number): string | null {
  return cursor === null
    ? null
    : `${path}?${new URLSearchParams({ cursor, limit: String(limit) }).toString()}`;
}

/** Memory as pages: who the agents know and what about them; admins delete, export, erase. */
export function memoryPages(app: PortalApp, deps: PortalDeps): void {
  const base = (tenant: Tenant): string => `/t/${tenant.slug}/memory`;

  app.get(
    "/t/:slug/memory",
    { schema: { params: SlugParams, querystring: MemoryQuery } },
    async (request, reply) => {
      const { tenant, role } = requireRole(request, "member");
      const q = request.query.q?.trim() ?? "";
      const results =
        q === "" ? null : (await deps.memory.search(tenant.id, q, SEARCH_RESULTS)).map(factView);
      const page = await peoplePage(deps, tenant.id, request.query);
      return reply.page("memory", {
        title: `Memory · ${tenant.name}`,
        tenant,
        role,
        q,
        results,
        people: page.items,
        next: pageLink(base(tenant), page.nextCursor, request.query.limit),
        first: request.query.cursor === undefined ? null : base(tenant),
      });
    },
  );

  /** The person page's data: who, their identities, one page of facts; 404 for an unknown person. */
  const personPage = async (
    access: Pick<TenantAccess, "tenant" | "role">,
    personId: string,
    query: PageQuery,
  ) => {
    const { tenant, role } = access;
    const { details, facts } = await personWithFacts(deps, tenant.id, personId, query);
    const path = `${base(tenant)}/people/${details.person.id}`;
    return {
      title: `${details.person.displayName ?? details.identities[0]?.userId ?? "Person"} · Memory`,
      tenant,
      role,
      canEdit: role !== "member",
      person: details.person,
      identities: details.identities,
      facts: facts.items,
      next: pageLink(path, facts.nextCursor, query.limit),
      first: query.cursor === undefined ? null : path,
      linkUserId: "",
    };
  };

  app.get(
    "/t/:slug/memory/people/:personId",
    { schema: { params: PersonPageParams, querystring: PageQuery } },
    async (request, reply) => {
      const access = requireRole(request, "member");
      return reply.page(
        "memory-person",
        await personPage(access, request.params.personId, request.query),
      );
    },
  );

  /** An admin's identity form: a refusal re-renders the person page with it and what they typed. */
  const identityAction = async (
    request: FastifyRequest<{ Params: z.infer<typeof PersonPageParams> }>,
    reply: FastifyReply,
    typed: string,
    run: (access: TenantAccess) => Promise<FastifyReply>,
  ) => {
    const access = requireRole(request, "admin");
    const data = await personPage(access, request.params.personId, FIRST_FACTS);
    return formAction(reply, "memory-person", { ...data, linkUserId: typed }, () => run(access));
  };

  app.post(
    "/t/:slug/memory/people/:personId/identities",
    { schema: { params: PersonPageParams, body: FormBody } },
    async (request, reply) => {
      const userId = request.body.userId ?? "";
      return identityAction(request, reply, userId, async ({ tenant, actor }) => {
        const details = await linkIdentityOf(
          deps,
          tenant.id,
          request.params.personId,
          userId,
          actor,
        );
        return reply.redirectWithFlash(
          `${base(tenant)}/people/${details.person.id}`,
          `${userId.trim()} is now one of their identities; what the agents remember follows them there.`,
        );
      });
    },
  );

  app.post(
    "/t/:slug/memory/people/:personId/identities/unlink",
    { schema: { params: PersonPageParams, body: FormBody } },
    async (request, reply) => {
      const userId = request.body.userId ?? "";
      return identityAction(request, reply, "", async ({ tenant, actor }) => {
        const { details } = await unlinkIdentityOf(
          deps,
          tenant.id,
          request.params.personId,
          userId,
          actor,
        );
        return reply.redirectWithFlash(
          `${base(tenant)}/people/${details.person.id}`,
          `${userId} is a person of its own again; the facts stay here.`,
        );
      });
    },
  );

  // A download, not a page; audited like the chat command's export.
  app.get(
    "/t/:slug/memory/people/:personId/export",
    { schema: { params: PersonPageParams } },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const exported = await deps.memory.exportPerson(tenant.id, request.params.personId, actor);
      return reply
        .type("application/json; charset=utf-8")
        .header(
          "content-disposition",
          `attachment; filename="${exportFileName(request.params.personId)}"`,
        )
        .send(JSON.stringify(exported, null, 2));
    },
  );

  app.post(
    "/t/:slug/memory/facts/:factId/delete",
    { schema: { params: FactPageParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      await forgetFactOrNotFound(deps, tenant.id, request.params.factId, actor);
      // Back to the person the fact was about, when the form says who (a path we build, never a URL).
      const personId = request.body.personId ?? "";
      const back = /^[0-9a-f-]{36}$/.test(personId)
        ? `${base(tenant)}/people/${personId}`
        : base(tenant);
      return reply.redirectWithFlash(back, "The fact is forgotten.");
    },
  );

  app.post(
    "/t/:slug/memory/people/:personId/forget",
    { schema: { params: PersonPageParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      if (request.body.confirm !== "yes")
        throw badRequest("confirm: tick the box to confirm that everything about them goes");
      const count = await deps.memory.forgetPerson(tenant.id, request.params.personId, actor);
      return reply.redirectWithFlash(
        `${base(tenant)}/people/${request.params.personId}`,
        `Erased ${String(count)} fact(s) about them.`,
      );
    },
  );
}
