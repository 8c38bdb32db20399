import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { AVATAR_TYPES } from "../../agents/avatar.ts";
import { agentUserId } from "../../agents/identity.ts";
import type { Agent } from "../../agents/types.ts";
import { AgentChangesSchema, NewAgentSchema } from "../../agents/validation.ts";
import type { Tenant } from "../../tenants/types.ts";
import { requireRole } from "../access.ts";
import { PageQuery, decodeCursor, pageOf, toPage, type Page } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

export const AgentParams = TenantParams.extend({ name: z.string().max(64) });

export const AgentView = z.object({
  name: z.string(),
  matrixUserId: z.string().describe("@<agentPrefix><name>:<the tenant's server name>"),
  displayName: z.string(),
  avatarUrl: z.string().nullable().describe("mxc:// URL"),
  instructions: z.string(),
  provider: z.string(),
  model: z.string(),
  baseUrl: z.string().nullable(),
  temperature: z.number(),
  maxTokens: z.number().int(),
  keySource: z.enum(["managed", "own"]),
  triggerPolicy: z.enum(["mentions", "dms", "all"]),
  memoryScope: z.enum(["private", "shared"]),
  status: z.enum(["active", "paused"]),
});
export type AgentView = z.infer<typeof AgentView>;

/** The server name in the tenant's Matrix IDs (its homeserver's, or the one it will get). */
export async function serverNameOf(deps: PortalDeps, tenant: Tenant): Promise<string> {
  return (
    (await deps.tenantRepository.serverName(deps.db, tenant.id)) ??
    `${tenant.slug}.${deps.config.portal.baseDomain}`
  );
}

export function agentView(deps: PortalDeps, agent: Agent, serverName: string): AgentView {
  return {
    name: agent.name,
    matrixUserId: agentUserId(deps.config.runtime.agentPrefix, agent.name, serverName),
    displayName: agent.displayName,
    avatarUrl: agent.avatarUrl,
    instructions: agent.instructions,
    provider: agent.provider,
    model: agent.model,
    baseUrl: agent.baseUrl,
    temperature: agent.temperature,
    maxTokens: agent.maxTokens,
    keySource: agent.keySource,
    triggerPolicy: agent.triggerPolicy,
    memoryScope: agent.memoryScope,
    status: agent.status,
  };
}

/**
 * A page of the tenant's agents by name. A tenant has few agents (the plan
 * bounds them), so the page is cut from the full list; the cursor is the
 * last name shown.
 */
export async function agentsPage(
  deps: PortalDeps,
  tenant: Tenant,
  query: PageQuery,
): Promise<Page<AgentView>> {
  const after = decodeCursor(query.cursor, "string");
  const serverName = await serverNameOf(deps, tenant);
  const agents = (await deps.agents.list(tenant.id))
    .filter((agent) => after === undefined || agent.name > after)
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .slice(0, query.limit + 1);
  return toPage(
    agents.map((agent) => agentView(deps, agent, serverName)),
    query.limit,
    (agent) => agent.name,
  );
}

/** Agents over JSON: the same AgentService (and so the same rules) as the pages and chat commands. */
export function agentApi(app: PortalApp, deps: PortalDeps): void {
  const one = async (tenant: Tenant, name: string): Promise<AgentView> =>
    agentView(deps, await deps.agents.get(tenant.id, name), await serverNameOf(deps, tenant));

  app.get(
    "/api/v1/tenants/:tenantId/agents",
    {
      schema: {
        tags: ["agents"],
        summary: "The tenant's agents, by name",
        params: TenantParams,
        querystring: PageQuery,
        response: { 200: pageOf(AgentView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      const page = await agentsPage(deps, tenant, request.query);
      return { items: [...page.items], nextCursor: page.nextCursor };
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/agents",
    {
      schema: {
        tags: ["agents"],
        summary: "Create an agent (admins); settings left out get the defaults",
        params: TenantParams,
        // The service's own schema: the API documents and enforces exactly its rules.
        body: NewAgentSchema,
        response: { 201: AgentView },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const agent = await deps.agents.create(tenant.id, request.body, actor);
      return reply.code(201).send(agentView(deps, agent, await serverNameOf(deps, tenant)));
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/agents/:name",
    {
      schema: {
        tags: ["agents"],
        summary: "One agent's settings",
        params: AgentParams,
        response: { 200: AgentView },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      return one(tenant, request.params.name);
    },
  );

  app.patch(
    "/api/v1/tenants/:tenantId/agents/:name",
    {
      schema: {
        tags: ["agents"],
        summary: "Change some of an agent's settings (admins)",
        params: AgentParams,
        body: AgentChangesSchema,
        response: { 200: AgentView },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "admin");
      const agent = await deps.agents.update(tenant.id, request.params.name, request.body, actor);
      return agentView(deps, agent, await serverNameOf(deps, tenant));
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/agents/:name",
    {
      schema: {
        tags: ["agents"],
        summary: "Delete an agent (admins); its private memory goes with it",
        params: AgentParams,
        response: { 204: z.null() },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      await deps.agents.remove(tenant.id, request.params.name, actor);
      return reply.code(204).send(null);
    },
  );

  // Raw image bodies, only on this route and up to the avatar limit (an encapsulated context).
  void app.register((plugin, _options, done) => {
    const scoped = plugin.withTypeProvider<ZodTypeProvider>();
    scoped.addContentTypeParser(
      [...AVATAR_TYPES],
      { parseAs: "buffer", bodyLimit: deps.config.portal.maxAvatarBytes },
      (_request, body, done) => {
        done(null, body);
      },
    );
    scoped.put(
      "/api/v1/tenants/:tenantId/agents/:name/avatar",
      {
        schema: {
          tags: ["agents"],
          summary: "Set an agent's avatar (admins)",
          description: `The body is the image itself, with Content-Type ${AVATAR_TYPES.join(", ")} (at most portal.maxAvatarBytes; the real type is read from the bytes). It is stored in the tenant's homeserver media repository and shown on the agent's Matrix profile. 502 when the homeserver cannot be reached (nothing changes then).`,
          params: AgentParams,
          body: z.custom<Buffer>((value) => Buffer.isBuffer(value), "send the image as the body"),
          response: { 200: AgentView },
        },
      },
      async (request) => {
        const { tenant, actor } = requireRole(request, "admin");
        const agent = await deps.avatars.set(tenant.id, request.params.name, request.body, actor);
        return agentView(deps, agent, await serverNameOf(deps, tenant));
      },
    );
    done();
  });
}
