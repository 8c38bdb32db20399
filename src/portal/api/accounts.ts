import { z } from "zod";
import { EmailSchema } from "../../accounts/service.ts";
import { requireAccount } from "../access.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { authRateLimit } from "./rate-limits.ts";

const AccountView = z.object({
  id: z.string(),
  email: z.string(),
  displayName: z.string(),
  emailVerified: z.boolean(),
  isOperator: z.boolean(),
});
const Accepted = z.object({ status: z.string() });

/** Accounts and sessions over JSON: the same flows as the sign-up, login and reset pages. */
export function accountApi(app: PortalApp, deps: PortalDeps): void {
  const limit = authRateLimit(deps);

  app.post(
    "/api/v1/accounts",
    {
      config: { rateLimit: limit },
      schema: {
        tags: ["accounts"],
        summary: "Sign up; a verification link is mailed",
        body: z.strictObject({
          email: z.string().max(254),
          password: z.string().max(256),
          displayName: z.string().max(100).optional(),
        }),
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      await deps.accounts.signup(request.body);
      return reply.code(202).send({ status: "check your email for a verification link" });
    },
  );

  app.post(
    "/api/v1/accounts/verify",
    {
      schema: {
        tags: ["accounts"],
        summary: "Verify an email address with the mailed token",
        body: z.strictObject({ token: z.string().min(1).max(128) }),
        response: { 200: Accepted },
      },
    },
    async (request) => {
      await deps.accounts.verifyEmail(request.body.token);
      return { status: "verified" };
    },
  );

  app.post(
    "/api/v1/session",
    {
      config: { rateLimit: limit },
      schema: {
        tags: ["accounts"],
        summary: "Sign in (sets the session cookie); GET /api/v1/me first for a CSRF token",
        body: z.strictObject({ email: z.string().max(254), password: z.string().max(256) }),
        response: { 200: z.object({ account: AccountView, csrfToken: z.string() }) },
      },
    },
    async (request, reply) => {
      const account = await deps.accounts.authenticate(request.body.email, request.body.password);
      const { cookieValue, record } = await deps.sessions.create(account.id);
      void reply.startSession(cookieValue);
      request.principal = { kind: "account", account, sessionIdSha256: record.idSha256 };
      return { account, csrfToken: request.csrfToken() };
    },
  );

  app.delete(
    "/api/v1/session",
    { schema: { tags: ["accounts"], summary: "Sign out", response: { 204: z.null() } } },
    async (request, reply) => {
      const principal = request.principal;
      if (principal?.kind === "account") await deps.sessions.revoke(principal.sessionIdSha256);
      return reply.endSession().code(204).send(null);
    },
  );

  app.get(
    "/api/v1/me",
    {
      schema: {
        tags: ["accounts"],
        summary: "The signed-in account, its tenants, and the CSRF token for this session",
        response: {
          200: z.object({
            account: AccountView.nullable(),
            csrfToken: z.string(),
            tenants: z.array(
              z.object({ id: z.string(), slug: z.string(), name: z.string(), role: z.string() }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const principal = request.principal;
      if (principal?.kind !== "account")
        return { account: null, csrfToken: request.csrfToken(), tenants: [] };
      const account = requireAccount(request);
      const tenants = (await deps.tenantRepository.listForAccount(deps.db, account.id)).map(
        ({ tenant, role }) => ({ id: tenant.id, slug: tenant.slug, name: tenant.name, role }),
      );
      return { account, csrfToken: request.csrfToken(), tenants };
    },
  );

  app.post(
    "/api/v1/password-reset",
    {
      config: { rateLimit: limit },
      schema: {
        tags: ["accounts"],
        summary: "Mail a password reset link (answers the same whether the account exists)",
        body: z.strictObject({ email: EmailSchema }),
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      await deps.accounts.requestPasswordReset(request.body.email);
      return reply
        .code(202)
        .send({ status: "if the address has an account, a link is on its way" });
    },
  );

  app.post(
    "/api/v1/password-reset/confirm",
    {
      config: { rateLimit: limit },
      schema: {
        tags: ["accounts"],
        summary: "Set a new password with the mailed token; ends every session of the account",
        body: z.strictObject({ token: z.string().min(1).max(128), password: z.string().max(256) }),
        response: { 200: Accepted },
      },
    },
    async (request) => {
      const accountId = await deps.accounts.resetPassword(
        request.body.token,
        request.body.password,
      );
      await deps.sessions.revokeAll(accountId);
      return { status: "password changed; sign in again" };
    },
  );
}
