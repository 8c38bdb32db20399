import type { FastifyReply } from "fastify";
import { z } from "zod";
import { ModelProviderName } from "../../config/schema.ts";
import { notFound } from "../../shared/errors.ts";
import { requireRole, type TenantAccess } from "../access.ts";
import { FormBody, formAction } from "../forms.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { SlugParams } from "./tenants.ts";

const ProviderParams = SlugParams.extend({ provider: ModelProviderName });
const TokenParams = SlugParams.extend({ tokenId: z.string().max(64) });

/** The keys page: the tenant's own model keys (write-only) and its API tokens. Admins only. */
export function keyPages(app: PortalApp, deps: PortalDeps): void {
  const pageData = async (checked: TenantAccess) => {
    const { tenant, role } = checked;
    const keys = new Map(
      (await deps.providerKeys.list(tenant.id)).map((key) => [key.provider, key.hint]),
    );
    return {
      title: `Keys · ${tenant.name}`,
      tenant,
      role,
      providers: ModelProviderName.options.map((provider) => ({
        provider,
        hint: keys.get(provider) ?? null,
      })),
      tokens: await deps.apiTokens.list(tenant.id),
      created: null,
      tokenName: "",
    };
  };
  const back = (reply: FastifyReply, checked: TenantAccess, message: string) =>
    reply.redirectWithFlash(`/t/${checked.tenant.slug}/keys`, message);

  app.get("/t/:slug/keys", { schema: { params: SlugParams } }, async (request, reply) =>
    reply.page("keys", await pageData(requireRole(request, "admin"))),
  );

  app.post(
    "/t/:slug/keys/:provider",
    { schema: { params: ProviderParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const { provider } = request.params;
      return formAction(reply, "keys", await pageData(checked), async () => {
        const { hint } = await deps.providerKeys.set(
          checked.tenant.id,
          provider,
          request.body.key ?? "",
          checked.actor,
        );
        return back(reply, checked, `The ${provider} key ending ${hint} is saved.`);
      });
    },
  );

  app.post(
    "/t/:slug/keys/:provider/remove",
    { schema: { params: ProviderParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const { provider } = request.params;
      return formAction(reply, "keys", await pageData(checked), async () => {
        if (!(await deps.providerKeys.remove(checked.tenant.id, provider, checked.actor)))
          throw notFound(`${provider} key`);
        return back(reply, checked, `The ${provider} key is removed.`);
      });
    },
  );

  app.post(
    "/t/:slug/tokens",
    { schema: { params: SlugParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const { name = "" } = request.body;
      const data = await pageData(checked);
      return formAction(reply, "keys", { ...data, tokenName: name }, async () => {
        const principal = request.principal;
        const created = await deps.apiTokens.create(
          checked.tenant.id,
          { name },
          principal?.kind === "account" ? principal.account.id : null,
          checked.actor,
        );
        // Shown on this response only (never through a redirect's cookie), and never cached.
        void reply.header("cache-control", "no-store");
        return reply.page("keys", {
          ...data,
          tokens: await deps.apiTokens.list(checked.tenant.id),
          created,
        });
      });
    },
  );

  app.post(
    "/t/:slug/tokens/:tokenId/revoke",
    { schema: { params: TokenParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      return formAction(reply, "keys", await pageData(checked), async () => {
        if (
          !(await deps.apiTokens.revoke(checked.tenant.id, request.params.tokenId, checked.actor))
        )
          throw notFound("live token");
        return back(reply, checked, "The token is revoked.");
      });
    },
  );
}
