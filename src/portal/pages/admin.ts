import type { FastifyReply } from "fastify";
import { z } from "zod";
import { readAuditPage } from "../../audit/audit-log.ts";
import { isAppError } from "../../shared/errors.ts";
import { actorOf } from "../access.ts";
import { adminServices, operatorsOnly, withHealth } from "../admin-views.ts";
import { auditEntryView } from "../api/audit.ts";
import { degradedHomeservers } from "../../provisioning/health-store.ts";
import type { TenantId } from "../../shared/ids.ts";
import { FormBody } from "../forms.ts";
import { PageQuery, decodeCursor, toPage } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const TenantParams = z.object({ tenantId: z.string().max(64) });

/** The operators' admin area: every tenant, and one tenant's details, audit log and actions. */
export function adminPages(app: PortalApp, deps: PortalDeps): void {
  const { operations, health } = adminServices(deps);

  app.get(
    "/admin",
    { onRequest: operatorsOnly, schema: { querystring: PageQuery } },
    async (request, reply) => {
      const afterSlug = decodeCursor(request.query.cursor, "string");
      const rows = await operations.list({ limit: request.query.limit + 1, afterSlug });
      const page = toPage(rows, request.query.limit, (row) => row.slug);
      return reply.page("admin", {
        title: "Admin",
        tenants: await withHealth(health, page.items),
        ...(await provisioningViews()),
        next:
          page.nextCursor === null
            ? null
            : `/admin?${new URLSearchParams({ cursor: page.nextCursor, limit: String(request.query.limit) }).toString()}`,
        first: request.query.cursor === undefined ? null : "/admin",
      });
    },
  );

  /** The tenant page, optionally with an error from a refused action (and its status). */
  async function detail(
    reply: FastifyReply,
    tenantId: string,
    query: PageQuery,
    error?: { message: string; status: number },
  ): Promise<FastifyReply> {
    const overview = await operations.get(tenantId);
    const [tenant] = await withHealth(health, [overview]);
    const beforeId = decodeCursor(query.cursor, "number");
    const rows = await readAuditPage(deps.db, overview.id, { limit: query.limit + 1, beforeId });
    const page = toPage(rows.map(auditEntryView), query.limit, (row) => row.id);
    const base = `/admin/tenants/${overview.id}`;
    return reply.page(
      "admin-tenant",
      {
        title: `Admin · ${overview.name}`,
        adminTenant: tenant,
        ...(await provisioningViews()),
        plans: operations.plans(),
        entries: page.items,
        next:
          page.nextCursor === null
            ? null
            : `${base}?${new URLSearchParams({ cursor: page.nextCursor, limit: String(query.limit) }).toString()}`,
        first: query.cursor === undefined ? null : base,
        ...(error === undefined ? {} : { error: error.message }),
      },
      error?.status ?? 200,
    );
  }

  /** Each tenant's last backup and degraded homeservers, by tenant id, for the templates. */
  async function provisioningViews(): Promise<{
    lastBackups: Record<
      string,
      { createdAt: string; status: string; bytes: number | null; error: string | null }
    >;
    degraded: Record<string, { since: string | null; failures: number; lastError: string | null }>;
  }> {
    const lastBackups: Awaited<ReturnType<typeof provisioningViews>>["lastBackups"] = {};
    for (const [id, backup] of await deps.backups.latestPerTenant())
      lastBackups[id] = {
        createdAt: backup.createdAt.toISOString(),
        status: backup.status,
        bytes: backup.bytes,
        error: backup.error,
      };
    const degraded: Awaited<ReturnType<typeof provisioningViews>>["degraded"] = {};
    for (const [id, record] of await degradedHomeservers(deps.db))
      degraded[id] = {
        since: record.lastHealthyAt?.toISOString() ?? null,
        failures: record.consecutiveFailures,
        lastError: record.lastError,
      };
    return { lastBackups, degraded };
  }

  app.post(
    "/admin/tenants/:tenantId/backup",
    { onRequest: operatorsOnly, schema: { params: TenantParams, body: FormBody } },
    async (request, reply) =>
      act(reply, request.params.tenantId, async () => {
        const overview = await operations.get(request.params.tenantId);
        const made = await deps.backups.create({
          id: overview.id as TenantId,
          slug: overview.slug,
        });
        return `Backed up (${String(made.bytes ?? 0)} bytes) to ${made.path}.`;
      }),
  );

  app.get(
    "/admin/tenants/:tenantId",
    { onRequest: operatorsOnly, schema: { params: TenantParams, querystring: PageQuery } },
    async (request, reply) => detail(reply, request.params.tenantId, request.query),
  );

  /** Runs an action; a refused one (400, 409) re-renders the tenant page with the reason. */
  async function act(
    reply: FastifyReply,
    tenantId: string,
    run: () => Promise<string>,
  ): Promise<FastifyReply> {
    let message: string;
    try {
      message = await run();
    } catch (error) {
      if (!isAppError(error) || error.httpStatus >= 500 || error.code === "not_found") throw error;
      return detail(
        reply,
        tenantId,
        { limit: 50 },
        {
          message: error.message,
          status: error.httpStatus,
        },
      );
    }
    return reply.redirectWithFlash(`/admin/tenants/${tenantId}`, message);
  }

  const actions = {
    suspend: "Suspended: its agents stop answering; its data is kept.",
    resume: "Resumed.",
    reprovision:
      "Re-provisioning requested. The provisioner takes it up at once, skipping any backoff.",
  } as const;
  for (const action of ["suspend", "resume", "reprovision"] as const) {
    app.post(
      `/admin/tenants/:tenantId/${action}`,
      { onRequest: operatorsOnly, schema: { params: TenantParams, body: FormBody } },
      async (request, reply) =>
        act(reply, request.params.tenantId, async () => {
          await operations[action](request.params.tenantId, actorOf(request));
          return actions[action];
        }),
    );
  }

  app.post(
    "/admin/tenants/:tenantId/plan",
    { onRequest: operatorsOnly, schema: { params: TenantParams, body: FormBody } },
    async (request, reply) =>
      act(reply, request.params.tenantId, async () => {
        const { changed, tenant } = await operations.assignPlan(
          request.params.tenantId,
          request.body.plan ?? "",
          actorOf(request),
        );
        return changed ? `Plan set to ${tenant.plan}.` : `The tenant already is on ${tenant.plan}.`;
      }),
  );
}
