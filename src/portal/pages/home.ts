import type { PortalApp, PortalDeps } from "../types.ts";

/** The front page: the signed-in person's tenants, or the way in. */
export function homePages(app: PortalApp, deps: PortalDeps): void {
  app.get("/", async (request, reply) => {
    const principal = request.principal;
    if (principal?.kind !== "account") return reply.redirect("/login", 303);
    const tenants = (await deps.tenantRepository.listForAccount(deps.db, principal.account.id)).map(
      ({ tenant, role }) => ({ ...tenant, role }),
    );
    return reply.page("home", { title: "Your tenants", tenants });
  });
}
