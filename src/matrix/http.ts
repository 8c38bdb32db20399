import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import type { Logger } from "../shared/logger.ts";
import { isMatrixUserId } from "../shared/ids.ts";
import { jsonDepthExceeds } from "../shared/json-depth.ts";
import { makeStorable } from "../shared/storable-text.ts";
import { agentNameOf } from "../agents/identity.ts";
import type { EventPipeline } from "./event-pipeline.ts";
import type { RuntimeMetrics } from "./metrics.ts";
import type { ServedTenant, TenantRegistry } from "./tenant-registry.ts";
import { isDatabaseUnavailable } from "../db/unavailable.ts";

const MAX_TXN_ID_CHARS = 255;
/** Deepest nesting an event may have; real events nest a few levels, and Synapse itself refuses JSON near 1,000. */
const MAX_EVENT_DEPTH = 128;

export interface AppserviceHttpOptions {
  readonly registry: TenantRegistry;
  readonly pipeline: EventPipeline;
  readonly metrics: RuntimeMetrics;
  readonly log: Logger;
  readonly bodyLimitBytes: number;
  readonly agentPrefix: string;
  /** The relay account's localpart: bridges invite it into their portals (src/bridges). */
  readonly relayLocalpart: string;
  /** Whether an agent with this name exists for the tenant (user queries). */
  readonly agentExists: (served: ServedTenant, name: string) => Promise<boolean>;
}

function matrixError(
  reply: FastifyReply,
  status: number,
  errcode: string,
  error: string,
): FastifyReply {
  return reply.code(status).send({ errcode, error });
}

/** The token a homeserver presents: the Authorization header, or the legacy access_token parameter. */
function presentedToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith("Bearer ") === true) return header.slice("Bearer ".length).trim();
  const query = request.query as Record<string, unknown> | undefined;
  return typeof query?.access_token === "string" ? query.access_token : undefined;
}

declare module "fastify" {
  interface FastifyRequest {
    served?: ServedTenant;
  }
}

/**
 * The appservice API (spec: Application Service API v1) for every tenant on
 * one listener. Each tenant's registration URL is <runtime>/tenants/<id>, so
 * the path names the tenant and its hs_token must match: no token 401, wrong
 * token 403, unknown tenant 404, checked before the body is even parsed.
 */
export function buildAppserviceHttp(options: AppserviceHttpOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.log.child({ module: "appservice-http" }) as FastifyBaseLogger,
    bodyLimit: options.bodyLimitBytes,
    // Homeservers hold keep-alive connections open; on shutdown they are cut
    // rather than waited for. An unacknowledged transaction is simply resent.
    forceCloseConnections: true,
  });

  app.addHook("onRequest", async (request, reply) => {
    const params = request.params as { tenantId?: string };
    if (params.tenantId === undefined) return;
    const auth = await options.registry.authenticate(params.tenantId, presentedToken(request));
    if (!auth.ok) return matrixError(reply, auth.status, auth.errcode, auth.error);
    request.served = auth.served;
  });

  app.setErrorHandler(
    (error: { statusCode?: number; code?: string; message: string }, request, reply) => {
      // The homeserver retries either way; an outage is a warning, not a bug report.
      if (isDatabaseUnavailable(error)) {
        request.log.warn({ err: error }, "appservice request failed: the database is unavailable");
        return matrixError(
          reply,
          503,
          "M_UNKNOWN",
          "Database unavailable; the homeserver should retry",
        );
      }
      const status = error.statusCode ?? 500;
      if (status >= 500) {
        request.log.error({ err: error }, "appservice request failed");
        return matrixError(reply, 500, "M_UNKNOWN", "Internal error; the homeserver should retry");
      }
      if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE")
        return matrixError(reply, 413, "M_TOO_LARGE", "Transaction too large");
      if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
        return matrixError(reply, 415, "M_NOT_JSON", "Content must be application/json");
      return matrixError(reply, status, "M_NOT_JSON", error.message);
    },
  );

  app.setNotFoundHandler((_request, reply) =>
    matrixError(reply, 404, "M_UNRECOGNIZED", "Unrecognized request"),
  );

  const transaction = async (
    request: FastifyRequest<{ Params: { txnId: string } }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> => {
    const served = request.served as ServedTenant;
    const { txnId } = request.params;
    if (txnId.length === 0 || txnId.length > MAX_TXN_ID_CHARS)
      return matrixError(reply, 400, "M_INVALID_PARAM", "Bad transaction id");
    const body = request.body as { events?: unknown } | null | undefined;
    if (
      typeof body !== "object" ||
      body === null ||
      Array.isArray(body) ||
      !Array.isArray(body.events)
    ) {
      return matrixError(reply, 400, "M_BAD_JSON", "Body must be an object with an events array");
    }
    // An event nested too deeply to be serialized again (JSON.stringify
    // overflows the stack) is dropped like a malformed one: refusing the
    // transaction would make the homeserver retry it forever.
    const events = body.events.filter((event) => !jsonDepthExceeds(event, MAX_EVENT_DEPTH));
    if (events.length < body.events.length)
      request.log.warn(
        { txnId, dropped: body.events.length - events.length },
        "dropped events nested too deeply",
      );
    // The same for a NUL or unpaired surrogate (both pass Matrix JSON): they are replaced, as the database cannot store them.
    await options.pipeline.accept(served, makeStorable(txnId), makeStorable(events));
    return reply.code(200).send({});
  };
  app.put("/tenants/:tenantId/_matrix/app/v1/transactions/:txnId", transaction);
  app.put("/tenants/:tenantId/transactions/:txnId", transaction);

  app.post("/tenants/:tenantId/_matrix/app/v1/ping", async (_request, reply) =>
    reply.code(200).send({}),
  );

  const userQuery = async (
    request: FastifyRequest<{ Params: { userId: string } }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> => {
    const served = request.served as ServedTenant;
    const { userId } = request.params;
    const { serverName } = served.homeserver;
    const isRelay = userId === `@${options.relayLocalpart}:${serverName}`;
    const name = isMatrixUserId(userId)
      ? agentNameOf(options.agentPrefix, userId, serverName)
      : null;
    if (!isRelay && (name === null || !(await options.agentExists(served, name))))
      return matrixError(reply, 404, "M_NOT_FOUND", "No such agent");
    // The homeserver asks before it lets anyone interact with the user: make it exist.
    await served.appservice.getIntentForUserId(userId).ensureRegistered();
    return reply.code(200).send({});
  };
  app.get("/tenants/:tenantId/_matrix/app/v1/users/:userId", userQuery);
  app.get("/tenants/:tenantId/users/:userId", userQuery);

  // Agents own no room aliases and speak no third-party protocols.
  const noRooms = async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> =>
    matrixError(reply, 404, "M_NOT_FOUND", "No such room alias");
  app.get("/tenants/:tenantId/_matrix/app/v1/rooms/:alias", noRooms);
  app.get("/tenants/:tenantId/rooms/:alias", noRooms);

  app.get("/healthz", async (_request, reply) => reply.send({ status: "ok" }));
  app.get("/metrics", async (_request, reply) =>
    reply.type(options.metrics.registry.contentType).send(await options.metrics.registry.metrics()),
  );
  return app;
}
