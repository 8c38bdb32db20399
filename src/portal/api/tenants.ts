import { z } from "zod";
import { notFound } from "../../shared/errors.ts";
import type { TenantOverview } from "../../tenants/onboarding.ts";
import { statusLabel } from "../../tenants/onboarding.ts";
import type { Tenant } from "../../tenants/types.ts";
import { actorOf, requireAccount, requireRole } from "../access.ts";
import { offsetOf, offsetPage, slicePage } from "../offset-pages.ts";
import { PageQuery, pageOf } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

export const TenantIdParams = z.object({ tenantId: z.string().max(64) });
const Role = z.enum(["owner", "admin", "member"]);
const Status = z
  .enum(["provisioning", "active", "suspended"])
  .describe("active: the homeserver is running");
const StatusLabel = z.enum(["provisioning", "running", "suspended"]);

const TenantSummary = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  status: Status,
  statusLabel: StatusLabel,
  plan: z.string(),
  role: Role.describe("the caller's role (API tokens act as admin)"),
  createdAt: z.string(),
});
const TenantView = TenantSummary.extend({
  planName: z.string(),
  serverName: z.string().nullable().describe("the homeserver's server_name"),
  homeserverUrl: z.string().nullable().describe("enter this in a Matrix client such as Element"),
  botUserId: z.string().nullable().describe("DM this user to administer the tenant by chat"),
  agentUserIdPattern: z.string().nullable().describe("agents appear as these Matrix IDs"),
  matrixUserId: z.string().nullable().describe("the caller's own linked Matrix ID"),
});

function summary(tenant: Tenant, role: z.infer<typeof Role>): z.infer<typeof TenantSummary> {
  return {
    id: tenant.id,
    slug: tenant.slug,
    name: tenant.name,
    status: tenant.status,
    statusLabel: statusLabel(tenant.status),
    plan: tenant.plan,
    role,
    createdAt: tenant.createdAt.toISOString(),
  };
}

function view(overview: TenantOverview): z.infer<typeof TenantView> {
  return {
    ...summary(overview.tenant, overview.role),
    planName: overview.planName,
    serverName: overview.serverName,
    homeserverUrl: overview.homeserverUrl,
    botUserId: overview.botUserId,
    agentUserIdPattern: overview.agentUserIdPattern,
    matrixUserId: overview.matrixUserId,
  };
}

/** Tenants over JSON: the caller's tenants, creating one, and one tenant's overview. */
export function tenantApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants",
    {
      schema: {
        tags: ["tenants"],
        summary: "The caller's tenants with its role in each (an API token sees its own tenant)",
        querystring: PageQuery,
        response: { 200: pageOf(TenantSummary) },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal?.kind === "token") {
        const tenant = await deps.tenantRepository.findById(deps.db, principal.tenantId);
        if (tenant === undefined) throw notFound("tenant");
        const page = slicePage([summary(tenant, "admin")], request.query);
        return { ...page, items: [...page.items] };
      }
      const account = requireAccount(request);
      const rows = await deps.onboarding.tenantsOf(account.id, {
        offset: offsetOf(request.query),
        limit: request.query.limit + 1,
      });
      const page = offsetPage(rows, request.query);
      return { ...page, items: page.items.map((row) => summary(row.tenant, row.role)) };
    },
  );

  app.post(
    "/api/v1/tenants",
    {
      schema: {
        tags: ["tenants"],
        summary:
          "Create a tenant (needs a verified email; not with an API token). Its homeserver is <slug>.<base domain>, provisioned in the background; the caller becomes its owner",
        body: z.strictObject({ name: z.string().max(100), slug: z.string().max(64) }),
        response: { 201: TenantView },
      },
    },
    async (request, reply) => {
      const account = requireAccount(request);
      const tenant = await deps.onboarding.create(account, request.body, actorOf(request));
      return reply.code(201).send(view(await deps.onboarding.overview(tenant, "owner", null)));
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId",
    {
      schema: {
        tags: ["tenants"],
        summary: "A tenant's status, plan, homeserver and how to reach it from a Matrix client",
        params: TenantIdParams,
        response: { 200: TenantView },
      },
    },
    async (request) => {
      const { tenant, role } = requireRole(request, "member");
      const principal = request.principal;
      const own =
        principal?.kind === "account"
          ? await deps.members.membershipOf(tenant.id, principal.account.id)
          : undefined;
      return view(await deps.onboarding.overview(tenant, role, own?.matrixUserId ?? null));
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/homeserver-admin",
    {
      schema: {
        tags: ["tenants"],
        summary: "The homeserver's bootstrap admin account (owners), once provisioned",
        params: TenantIdParams,
        response: { 200: z.object({ userId: z.string(), passwordWaiting: z.boolean() }) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "owner");
      const admin = await deps.homeserverAdmins.of(tenant.id);
      if (admin === null) throw notFound("homeserver admin (the homeserver is still being set up)");
      return admin;
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/homeserver-admin/password",
    {
      schema: {
        tags: ["tenants"],
        summary:
          "The bootstrap admin's password, once: it is erased as it is returned (410 afterwards)",
        params: TenantIdParams,
        response: { 200: z.object({ userId: z.string(), password: z.string() }) },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "owner");
      const shown = await deps.homeserverAdmins.revealOnce(tenant.id, actor);
      return reply.header("cache-control", "no-store").send(shown);
    },
  );
}
