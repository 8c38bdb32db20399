import { z } from "zod";
import { ModelProviderName } from "../../config/schema.ts";
import { notFound } from "../../shared/errors.ts";
import type { ApiToken } from "../../tenants/api-tokens.ts";
import { requireRole } from "../access.ts";
import { slicePage } from "../offset-pages.ts";
import { PageQuery, pageOf } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantIdParams } from "./tenants.ts";

const KeyView = z.object({
  provider: ModelProviderName,
  hint: z.string().describe("the key's last characters; the key itself is never returned"),
});
const TokenView = z.object({
  id: z.string(),
  name: z.string(),
  prefix: z.string().describe("the token's first characters, to recognise it"),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
});
const ProviderParams = TenantIdParams.extend({ provider: ModelProviderName });
const TokenParams = TenantIdParams.extend({ tokenId: z.string().max(64) });
const NoContent = { 204: z.null() };

export const tokenView = (token: ApiToken): z.infer<typeof TokenView> => ({
  id: token.id,
  name: token.name,
  prefix: token.prefix,
  createdAt: token.createdAt.toISOString(),
  lastUsedAt: token.lastUsedAt?.toISOString() ?? null,
  revokedAt: token.revokedAt?.toISOString() ?? null,
});

/** BYOK provider keys (write-only) and API tokens (shown once) over JSON; admins only. */
export function keyApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants/:tenantId/keys",
    {
      schema: {
        tags: ["keys"],
        summary: "The tenant's own model keys, masked (a key is never returned once set)",
        params: TenantIdParams,
        querystring: PageQuery,
        response: { 200: pageOf(KeyView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      const page = slicePage(await deps.providerKeys.list(tenant.id), request.query);
      return { ...page, items: [...page.items] };
    },
  );

  app.put(
    "/api/v1/tenants/:tenantId/keys/:provider",
    {
      schema: {
        tags: ["keys"],
        summary: "Set (or replace) the tenant's own key for a model provider; stored encrypted",
        params: ProviderParams,
        body: z.strictObject({ key: z.string().max(1024) }),
        response: { 200: KeyView },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "admin");
      const { provider } = request.params;
      const { hint } = await deps.providerKeys.set(tenant.id, provider, request.body.key, actor);
      return { provider, hint };
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/keys/:provider",
    {
      schema: {
        tags: ["keys"],
        summary: "Remove the tenant's own key for a provider (agents fall back to the managed key)",
        params: ProviderParams,
        response: NoContent,
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const provider = request.params.provider;
      if (!(await deps.providerKeys.remove(tenant.id, provider, actor)))
        throw notFound(`${provider} key`);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/tokens",
    {
      schema: {
        tags: ["keys"],
        summary: "The tenant's API tokens, newest first, revoked ones included (never the token)",
        params: TenantIdParams,
        querystring: PageQuery,
        response: { 200: pageOf(TokenView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "admin");
      const page = slicePage(await deps.apiTokens.list(tenant.id), request.query);
      return { ...page, items: page.items.map(tokenView) };
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/tokens",
    {
      schema: {
        tags: ["keys"],
        summary:
          "Create an API token acting as admin of this tenant; `plaintext` is in this response only",
        params: TenantIdParams,
        body: z.strictObject({ name: z.string().max(64) }),
        response: { 201: z.object({ token: TokenView, plaintext: z.string() }) },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const principal = request.principal;
      const { token, plaintext } = await deps.apiTokens.create(
        tenant.id,
        request.body,
        principal?.kind === "account" ? principal.account.id : null,
        actor,
      );
      return reply
        .code(201)
        .header("cache-control", "no-store")
        .send({ token: tokenView(token), plaintext });
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/tokens/:tokenId",
    {
      schema: {
        tags: ["keys"],
        summary: "Revoke an API token; it is refused (401) from then on",
        params: TokenParams,
        response: NoContent,
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      if (!(await deps.apiTokens.revoke(tenant.id, request.params.tokenId, actor)))
        throw notFound("live token");
      return reply.code(204).send(null);
    },
  );
}
