import { z } from "zod";
import { withTenant } from "../../db/tenant-transaction.ts";
import { homeserverHealthOf } from "../../provisioning/health-store.ts";
import { actorOf, requireAccount, requireRole } from "../access.ts";
import { FormBody, formAction } from "../forms.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

export const SlugParams = z.object({ slug: z.string().max(64) });

/** Creating a tenant, and a tenant's overview page. */
export function tenantPages(app: PortalApp, deps: PortalDeps): void {
  const formData = (name: string, slug: string) => ({
    title: "New tenant",
    name,
    slug,
    baseDomain: deps.config.portal.baseDomain,
  });

  app.get("/tenants/new", async (request, reply) => {
    requireAccount(request);
    return reply.page("tenant-new", formData("", ""));
  });

  app.post("/tenants/new", { schema: { body: FormBody } }, async (request, reply) => {
    const account = requireAccount(request);
    const { name = "", slug = "" } = request.body;
    return formAction(reply, "tenant-new", formData(name, slug), async () => {
      const tenant = await deps.onboarding.create(account, { name, slug }, actorOf(request));
      return reply.redirectWithFlash(
        `/t/${tenant.slug}`,
        `${tenant.name} is created; its homeserver is being set up.`,
      );
    });
  });

  app.get("/t/:slug", { schema: { params: SlugParams } }, async (request, reply) => {
    const { tenant, role } = requireRole(request, "member");
    const account = requireAccount(request);
    const own = await deps.members.membershipOf(tenant.id, account.id);
    const overview = await deps.onboarding.overview(tenant, role, own?.matrixUserId ?? null);
    const health = await withTenant(deps.db, tenant.id, (trx) =>
      homeserverHealthOf(trx, tenant.id),
    );
    const degraded = health.status === "degraded";
    const admin = role === "owner" ? await deps.homeserverAdmins.of(tenant.id) : null;
    return reply.page("tenant-overview", {
      title: tenant.name,
      tenant,
      role,
      overview,
      degraded,
      admin,
    });
  });

  // Shown once, then forgotten (HomeserverAdmins.revealOnce); POST so that no link, prefetch or history replays it.
  app.post(
    "/t/:slug/homeserver-admin",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const { tenant, role, actor } = requireRole(request, "owner");
      const shown = await deps.homeserverAdmins.revealOnce(tenant.id, actor);
      void reply.header("cache-control", "no-store");
      return reply.page("homeserver-admin", { title: "Homeserver admin", tenant, role, shown });
    },
  );
}
