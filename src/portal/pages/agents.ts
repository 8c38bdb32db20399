import type { MultipartFile } from "@fastify/multipart";
import type { FastifyError, FastifyReply } from "fastify";
import { z } from "zod";
import { AVATAR_TYPES } from "../../agents/avatar.ts";
import type { Agent } from "../../agents/types.ts";
import { ModelProviderName } from "../../config/schema.ts";
import { AppError, badRequest } from "../../shared/errors.ts";
import type { Tenant } from "../../tenants/types.ts";
import type { MemberRole } from "../../tenants/memberships.ts";
import { requireRole } from "../access.ts";
import { agentView, agentsPage, serverNameOf, type AgentView } from "../api/agents.ts";
import { FormBody, showRefusal } from "../forms.ts";
import { PageQuery } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const SlugParams = z.object({ slug: z.string().max(64) });
const AgentPageParams = SlugParams.extend({ name: z.string().max(64) });
const UploadQuery = z.object({ _csrf: z.string().max(512).optional() });

/** The choices the form offers; the service's schema decides what is valid. */
const CHOICES = {
  provider: ModelProviderName.options,
  keySource: ["managed", "own"],
  triggerPolicy: ["mentions", "dms", "all"],
  memoryScope: ["private", "shared"],
  status: ["active", "paused"],
} as const;

/**
 * A posted agent form as AgentService input. Forms send text: the numbers
 * become numbers (text that is not one is refused with the chat command's
 * words) and an empty base URL means "none"; everything else goes to the
 * service as typed, so its schema judges the page, the API and chat alike
 * (unknown fields included).
 */
export function agentInput(form: Readonly<Record<string, string>>): Record<string, unknown> {
  const input: Record<string, unknown> = { ...form };
  for (const field of ["temperature", "maxTokens"] as const) {
    const text = form[field];
    if (text === undefined) continue;
    const value = text.trim() === "" ? Number.NaN : Number(text);
    if (!Number.isFinite(value)) throw badRequest(`${field}: must be a number`);
    input[field] = value;
  }
  if (form.baseUrl !== undefined)
    input.baseUrl = form.baseUrl.trim() === "" ? null : form.baseUrl.trim();
  return input;
}

/** What the form shows: the saved agent, overlaid with what was just typed. */
function formValues(
  saved: Partial<AgentView>,
  typed: Readonly<Record<string, string>> = {},
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(saved))
    values[key] = value === null ? "" : String(value);
  return { ...values, ...typed };
}

/** Agents as pages: list, create, edit, avatar upload, delete. Members look; admins change. */
export function agentPages(app: PortalApp, deps: PortalDeps): void {
  const base = (tenant: Tenant): string => `/t/${tenant.slug}/agents`;
  const formPage = (
    reply: FastifyReply,
    tenant: Tenant,
    role: MemberRole,
    data: {
      mode: "new" | "edit";
      values: Record<string, string>;
      agent?: AgentView;
      error?: string;
    },
    status = 200,
  ): Promise<FastifyReply> =>
    reply.page(
      "agent-form",
      {
        title: `${data.mode === "new" ? "New agent" : (data.agent?.displayName ?? "Agent")} · ${tenant.name}`,
        tenant,
        role,
        choices: CHOICES,
        avatarTypes: AVATAR_TYPES.join(","),
        maxAvatarKb: Math.floor(deps.config.portal.maxAvatarBytes / 1024),
        canEdit: role !== "member",
        ...data,
      },
      status,
    );

  app.get(
    "/t/:slug/agents",
    { schema: { params: SlugParams, querystring: PageQuery } },
    async (request, reply) => {
      const { tenant, role } = requireRole(request, "member");
      const page = await agentsPage(deps, tenant, request.query);
      return reply.page("agents", {
        title: `Agents · ${tenant.name}`,
        tenant,
        role,
        agents: page.items,
        canEdit: role !== "member",
        next:
          page.nextCursor === null
            ? null
            : `${base(tenant)}?${new URLSearchParams({ cursor: page.nextCursor, limit: String(request.query.limit) }).toString()}`,
        first: request.query.cursor === undefined ? null : base(tenant),
      });
    },
  );

  app.get("/t/:slug/agents/new", { schema: { params: SlugParams } }, async (request, reply) => {
    const { tenant, role } = requireRole(request, "admin");
    const defaults = deps.agents.defaults("agent");
    return formPage(reply, tenant, role, {
      mode: "new",
      values: formValues({ ...defaults, displayName: "" }),
    });
  });

  app.post(
    "/t/:slug/agents/new",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, role, actor } = requireRole(request, "admin");
      const typed = request.body;
      let agent: Agent;
      try {
        // An empty field on the new-agent form means "the default" (the name is never optional).
        const given = Object.fromEntries(
          Object.entries(typed).filter(([key, value]) => value !== "" || key === "name"),
        );
        agent = await deps.agents.create(tenant.id, agentInput(given), actor);
      } catch (error) {
        return showRefusal(error, (message, status) =>
          formPage(
            reply,
            tenant,
            role,
            { mode: "new", values: formValues({}, typed), error: message },
            status,
          ),
        );
      }
      return reply.redirectWithFlash(
        `${base(tenant)}/${agent.name}`,
        `Created ${agent.displayName}.`,
      );
    },
  );

  app.get(
    "/t/:slug/agents/:name",
    { schema: { params: AgentPageParams } },
    async (request, reply) => {
      const { tenant, role } = requireRole(request, "member");
      const agent = agentView(
        deps,
        await deps.agents.get(tenant.id, request.params.name),
        await serverNameOf(deps, tenant),
      );
      return formPage(reply, tenant, role, { mode: "edit", agent, values: formValues(agent) });
    },
  );

  app.post(
    "/t/:slug/agents/:name",
    { schema: { params: AgentPageParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, role, actor } = requireRole(request, "admin");
      const saved = agentView(
        deps,
        await deps.agents.get(tenant.id, request.params.name),
        await serverNameOf(deps, tenant),
      );
      const typed = request.body;
      let agent: Agent;
      try {
        agent = await deps.agents.update(tenant.id, saved.name, agentInput(typed), actor);
      } catch (error) {
        return showRefusal(error, (message, status) =>
          formPage(
            reply,
            tenant,
            role,
            { mode: "edit", agent: saved, values: formValues(saved, typed), error: message },
            status,
          ),
        );
      }
      return reply.redirectWithFlash(
        `${base(tenant)}/${agent.name}`,
        `Saved ${agent.displayName}.`,
      );
    },
  );

  app.post(
    "/t/:slug/agents/:name/delete",
    { schema: { params: AgentPageParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const agent = await deps.agents.remove(tenant.id, request.params.name, actor);
      return reply.redirectWithFlash(base(tenant), `Deleted ${agent.displayName}.`);
    },
  );

  // Multipart: the CSRF token comes in the form's action URL (?_csrf=), checked before this runs.
  app.post(
    "/t/:slug/agents/:name/avatar",
    { schema: { params: AgentPageParams, querystring: UploadQuery } },
    async (request, reply) => {
      const { tenant, role, actor } = requireRole(request, "admin");
      const saved = agentView(
        deps,
        await deps.agents.get(tenant.id, request.params.name),
        await serverNameOf(deps, tenant),
      );
      let agent: Agent;
      try {
        const file = await request.file();
        const bytes = file === undefined ? Buffer.alloc(0) : await readUpload(file);
        agent = await deps.avatars.set(tenant.id, saved.name, bytes, actor);
      } catch (error) {
        return showRefusal(error, (message, status) =>
          formPage(
            reply,
            tenant,
            role,
            { mode: "edit", agent: saved, values: formValues(saved), error: message },
            status,
          ),
        );
      }
      return reply.redirectWithFlash(
        `${base(tenant)}/${agent.name}`,
        `New avatar for ${agent.displayName}.`,
      );
    },
  );
}

/** The uploaded bytes; over portal.maxAvatarBytes is a 413 refusal shown on the form. */
async function readUpload(file: MultipartFile): Promise<Buffer> {
  try {
    return await file.toBuffer();
  } catch (error) {
    if ((error as Partial<FastifyError>).code === "FST_REQ_FILE_TOO_LARGE")
      throw new AppError("bad_request", "avatar: the image is too large", { httpStatus: 413 });
    throw error;
  }
}
