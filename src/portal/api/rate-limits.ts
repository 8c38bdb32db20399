import type { FastifyRequest } from "fastify";
import type { PortalDeps } from "../types.ts";

const MINUTE = "1 minute";

/** Login, sign-up and reset: per client address, against password guessing and mail flooding. */
export function authRateLimit(deps: PortalDeps) {
  return { max: deps.config.portal.authAttemptsPerMinute, timeWindow: MINUTE, groupId: "auth" };
}

/** Every request: per token or session (per address when anonymous). */
export function requestRateLimit(deps: PortalDeps) {
  return {
    max: deps.config.portal.apiRequestsPerMinute,
    timeWindow: MINUTE,
    keyGenerator: (request: FastifyRequest): string => {
      const principal = request.principal;
      if (principal?.kind === "token") return `token:${principal.tokenId}`;
      if (principal?.kind === "account") return `session:${principal.sessionIdSha256}`;
      return `ip:${request.ip}`;
    },
  };
}
