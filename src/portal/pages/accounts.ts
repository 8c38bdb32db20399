import type { FastifyRequest } from "fastify";
import { z } from "zod";
import { readOutbox, readOutboxMail } from "../../accounts/mailer.ts";
import { authRateLimit } from "../api/rate-limits.ts";
import { FormBody, formAction } from "../forms.ts";
import { outboxDir } from "../outbox.ts";
import type { PortalApp, PortalDeps } from "../types.ts";

const OUTBOX_PAGE_SIZE = 50;
const TokenQuery = z.object({ token: z.string().max(128).default("") });

/** Only local paths: a `next` pointing elsewhere would make the login page an open redirect. */
function safeNext(next: unknown): string {
  return typeof next === "string" && /^\/(?![/\\])/.test(next) ? next : "/";
}

function isLoopback(request: FastifyRequest): boolean {
  return ["127.0.0.1", "::1", "::ffff:127.0.0.1"].includes(request.socket.remoteAddress ?? "");
}

/** Sign-up, email verification, login, logout, password reset and the local outbox. */
export function accountPages(app: PortalApp, deps: PortalDeps): void {
  const limit = authRateLimit(deps);

  app.get("/signup", async (_request, reply) =>
    reply.page("signup", { title: "Sign up", email: "", displayName: "" }),
  );
  app.post(
    "/signup",
    { config: { rateLimit: limit }, schema: { body: FormBody } },
    async (request, reply) => {
      const { email = "", password = "", displayName = "" } = request.body;
      if (deps.config.portal.signup === "closed")
        return reply.page(
          "signup",
          { title: "Sign up", email, displayName, error: "sign-up is closed on this service" },
          403,
        );
      return formAction(reply, "signup", { title: "Sign up", email, displayName }, async () => {
        await deps.accounts.signup({ email, password, displayName });
        return reply.page("check-email", { title: "Check your email", email });
      });
    },
  );

  app.get("/verify", { schema: { querystring: TokenQuery } }, async (request, reply) =>
    formAction(reply, "error", { title: "Verification", status: 400 }, async () => {
      await deps.accounts.verifyEmail(request.query.token);
      return reply.redirectWithFlash(
        request.principal === null ? "/login" : "/",
        "Your email is verified.",
      );
    }),
  );
  app.post("/verify/resend", async (request, reply) => {
    const principal = request.principal;
    if (principal?.kind === "account") await deps.accounts.sendVerification(principal.account);
    return reply.redirectWithFlash("/", "We sent a new verification link.");
  });

  app.get(
    "/login",
    { schema: { querystring: z.object({ next: z.string().max(2048).optional() }) } },
    async (request, reply) =>
      reply.page("login", { title: "Sign in", email: "", next: safeNext(request.query.next) }),
  );
  app.post(
    "/login",
    { config: { rateLimit: limit }, schema: { body: FormBody } },
    async (request, reply) => {
      const { email = "", password = "", next } = request.body;
      return formAction(
        reply,
        "login",
        { title: "Sign in", email, next: safeNext(next) },
        async () => {
          const account = await deps.accounts.authenticate(email, password);
          const previous = request.principal;
          if (previous?.kind === "account") await deps.sessions.revoke(previous.sessionIdSha256);
          const { cookieValue } = await deps.sessions.create(account.id);
          return reply.startSession(cookieValue).redirect(safeNext(next), 303);
        },
      );
    },
  );

  app.post("/logout", async (request, reply) => {
    const principal = request.principal;
    if (principal?.kind === "account") await deps.sessions.revoke(principal.sessionIdSha256);
    return reply.endSession().redirectWithFlash("/login", "You are signed out.");
  });

  app.get("/reset", async (_request, reply) =>
    reply.page("reset", { title: "Reset your password", email: "" }),
  );
  app.post(
    "/reset",
    { config: { rateLimit: limit }, schema: { body: FormBody } },
    async (request, reply) => {
      const { email = "" } = request.body;
      return formAction(reply, "reset", { title: "Reset your password", email }, async () => {
        await deps.accounts.requestPasswordReset(email);
        return reply.page("check-email", { title: "Check your email", email, reset: true });
      });
    },
  );
  app.get("/reset/confirm", { schema: { querystring: TokenQuery } }, async (request, reply) =>
    reply.page("reset-confirm", { title: "Choose a new password", token: request.query.token }),
  );
  app.post(
    "/reset/confirm",
    { config: { rateLimit: limit }, schema: { body: FormBody } },
    async (request, reply) => {
      const { token = "", password = "" } = request.body;
      return formAction(
        reply,
        "reset-confirm",
        { title: "Choose a new password", token },
        async () => {
          const accountId = await deps.accounts.resetPassword(token, password);
          await deps.sessions.revokeAll(accountId);
          return reply
            .endSession()
            .redirectWithFlash("/login", "Your password is changed. Sign in with it.");
        },
      );
    },
  );

  // Without SMTP, mails land in the outbox; this page shows them, to this machine only.
  if (deps.config.portal.mail.smtpUrl === undefined) {
    const dir = outboxDir(deps.config);
    app.get("/outbox", async (request, reply) => {
      if (!isLoopback(request)) {
        reply.callNotFound();
        return reply;
      }
      return reply.page("outbox", {
        title: "Outbox",
        mails: await readOutbox(dir, OUTBOX_PAGE_SIZE),
      });
    });
    app.get(
      "/outbox/:id",
      { schema: { params: z.object({ id: z.string().max(128) }) } },
      async (request, reply) => {
        const mail = isLoopback(request) ? await readOutboxMail(dir, request.params.id) : undefined;
        if (mail === undefined) {
          reply.callNotFound();
          return reply;
        }
        return reply.page("outbox-mail", { title: mail.subject, mail });
      },
    );
  }
}
