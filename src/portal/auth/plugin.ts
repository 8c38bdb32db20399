import type { FastifyReply, FastifyRequest } from "fastify";
import { generateToken } from "../../secrets/cipher.ts";
import { AppError } from "../../shared/errors.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { CsrfTokens } from "./csrf.ts";
import { FailedAttempts } from "./failed-attempts.ts";

export const SESSION_COOKIE = "sb_session";
export const BROWSER_COOKIE = "sb_csrf";
const CSRF_HEADER = "x-csrf-token";
const CSRF_FIELD = "_csrf";
const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const BROWSER_COOKIE_MAX_AGE_S = 400 * 86_400;

declare module "fastify" {
  interface FastifyContextConfig {
    /** false for routes that authenticate otherwise (signed webhooks). */
    csrf?: boolean;
    /**
     * false for routes that never ask who is calling (health probes): no
     * token or session lookup, so they answer while the database is down.
     */
    principal?: boolean;
  }
  interface FastifyReply {
    /** Signs the browser in: a new session cookie (a new id, so no fixation). */
    startSession(cookieValue: string): FastifyReply;
    endSession(): FastifyReply;
  }
  interface FastifyRequest {
    /** The CSRF token for forms and the X-CSRF-Token header of this browser and session. */
    csrfToken(): string;
  }
}

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match?.[1] ?? "";
}

/**
 * Who is asking, for every request: a bearer API token, else the session
 * cookie, else nobody. Every browser gets a random id cookie the CSRF
 * tokens are bound to; unsafe requests from a browser (anything not
 * authenticated by a token) must carry a matching token, in the `_csrf`
 * form field or the X-CSRF-Token header.
 */
export function registerAuth(app: PortalApp, deps: PortalDeps): void {
  const csrf = new CsrfTokens(deps.cipher.deriveKey("csrf"));
  // Invalid bearer tokens count like failed logins, per address, so tokens cannot be guessed at speed.
  const bearerFailures = new FailedAttempts(deps.config.portal.authAttemptsPerMinute);
  const secureCookies = deps.publicUrl.startsWith("https:");
  const cookieOptions = {
    httpOnly: true,
    sameSite: "lax",
    secure: secureCookies,
    path: "/",
  } as const;

  app.decorateRequest("principal", null);
  app.decorateRequest("browserId", "");
  app.decorateRequest("csrfToken", function (this: FastifyRequest) {
    const sessionId = this.principal?.kind === "account" ? this.principal.sessionIdSha256 : null;
    return csrf.issue(this.browserId, sessionId);
  });
  app.decorateReply("startSession", function (this: FastifyReply, cookieValue: string) {
    return this.setCookie(SESSION_COOKIE, cookieValue, {
      ...cookieOptions,
      maxAge: deps.config.portal.sessionIdleDays * 86_400,
    });
  });
  app.decorateReply("endSession", function (this: FastifyReply) {
    return this.clearCookie(SESSION_COOKIE, cookieOptions);
  });

  app.addHook("onRequest", async (request, reply) => {
    if (request.routeOptions.config.principal === false) return;
    const bearer = bearerOf(request);
    if (bearer !== undefined) {
      if (bearerFailures.exhausted(request.ip))
        throw new AppError(
          "limit_reached",
          "too many invalid API tokens from this address; wait a minute and try again",
        );
      const token = await deps.apiTokens.authenticate(bearer);
      if (token === undefined) {
        bearerFailures.record(request.ip);
        throw new AppError("unauthorized", "the API token is invalid or revoked");
      }
      request.principal = { kind: "token", ...token };
      return;
    }
    const browserId = request.cookies[BROWSER_COOKIE];
    if (browserId !== undefined && /^[A-Za-z0-9_-]{43}$/.test(browserId)) {
      request.browserId = browserId;
    } else {
      request.browserId = generateToken();
      void reply.setCookie(BROWSER_COOKIE, request.browserId, {
        ...cookieOptions,
        maxAge: BROWSER_COOKIE_MAX_AGE_S,
      });
    }
    const sessionCookie = request.cookies[SESSION_COOKIE];
    if (sessionCookie === undefined || sessionCookie.length > 128) return;
    const session = await deps.sessions.resolve(sessionCookie);
    if (session === undefined) {
      void reply.endSession();
      return;
    }
    request.principal = {
      kind: "account",
      account: session.account,
      sessionIdSha256: session.record.idSha256,
    };
  });

  // Before validation, so a forged request is refused as forged whatever its body.
  app.addHook("preValidation", (request, _reply, done) => {
    if (
      !UNSAFE_METHODS.has(request.method) ||
      request.principal?.kind === "token" ||
      request.routeOptions.config.csrf === false
    ) {
      done();
      return;
    }
    const body = request.body as Record<string, unknown> | null | undefined;
    const query = request.query as Record<string, unknown> | undefined;
    const presented =
      request.headers[CSRF_HEADER] ??
      (typeof body === "object" && body !== null ? body[CSRF_FIELD] : undefined) ??
      // Multipart bodies are read by the handler, so their form carries the token in its action URL.
      (request.isMultipart() ? query?.[CSRF_FIELD] : undefined);
    const sessionId =
      request.principal?.kind === "account" ? request.principal.sessionIdSha256 : null;
    if (!csrf.verify(presented, request.browserId, sessionId)) {
      done(
        new AppError(
          "forbidden",
          "this form has expired or did not come from this site; reload the page and try again",
        ),
      );
      return;
    }
    // Checked; the route's schema describes the form without it.
    if (typeof body === "object" && body !== null) Reflect.deleteProperty(body, CSRF_FIELD);
    done();
  });
}
