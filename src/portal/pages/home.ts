import { memberships } from "../../tenants/memberships.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

/** The front page: the signed-in person's tenants, or the way in. */
export function homePages(app: PortalApp, deps: PortalDeps): void {
  app.get("/", async (request, reply) => {
    const principal = request.principal;
    if (principal?.kind !== "account") return reply.redirect("/login", 303);
    const tenants = [];
    for (const { tenantId, role } of await memberships.tenantsOf(deps.db, principal.account.id)) {
      const tenant = await deps.tenantRepository.findById(deps.db, tenantId);
      if (tenant !== undefined) tenants.push({ ...tenant, role });
    }
    return reply.page("home", { title: "Your tenants", tenants });
  });
}
