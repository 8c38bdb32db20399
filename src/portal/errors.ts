import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { databaseUnavailable, isDatabaseUnavailable } from "../db/unavailable.ts";
import { isAppError, type ErrorCode } from "../shared/errors.ts";
import type { PortalApp } from "./types.ts";

/** The JSON shape of every API error. */
export interface ApiErrorBody {
  readonly error: {
    readonly code: ErrorCode | "too_large" | "unsupported_media_type" | "rate_limited";
    readonly message: string;
    readonly details?: Readonly<Record<string, unknown>>;
  };
}

const FASTIFY_CODES: Record<
  string,
  { status: number; code: ApiErrorBody["error"]["code"]; message: string }
> = {
  FST_ERR_CTP_BODY_TOO_LARGE: {
    status: 413,
    code: "too_large",
    message: "the request body is too large",
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: "unsupported_media_type",
    message: "send application/json (API) or a form (pages)",
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    status: 400,
    code: "bad_request",
    message: "the JSON body is empty",
  },
  FST_ERR_CTP_INVALID_JSON_BODY: {
    status: 400,
    code: "bad_request",
    message: "the body is not valid JSON",
  },
  FST_INVALID_MULTIPART_CONTENT_TYPE: {
    status: 415,
    code: "unsupported_media_type",
    message: "send a multipart form",
  },
  FST_REQ_FILE_TOO_LARGE: { status: 413, code: "too_large", message: "the file is too large" },
  FST_PARTS_LIMIT: { status: 413, code: "too_large", message: "too many form parts" },
  FST_FILES_LIMIT: { status: 413, code: "too_large", message: "too many files" },
};

/** What a 503 for a database outage asks clients to wait before trying again. */
const DATABASE_RETRY_AFTER_SECONDS = 5;

function isApi(request: FastifyRequest): boolean {
  return request.url.startsWith("/api/");
}

/** Maps anything thrown to a status and a message a person can act on. 5xx never leak details. */
function classify(error: unknown): { status: number; body: ApiErrorBody } {
  // A connection lost under a query arrives as pg's own error: the same 503 as a refused one.
  if (!isAppError(error) && isDatabaseUnavailable(error))
    return classify(databaseUnavailable(error));
  if (isAppError(error)) {
    return {
      status: error.httpStatus,
      body: {
        error: {
          code: error.code,
          message: error.message,
          ...(error.details === undefined ? {} : { details: error.details }),
        },
      },
    };
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    const problems = error.validation.map((issue) => {
      const where = `${error.validationContext ?? "input"}${issue.instancePath.replace(/\//g, ".")}`;
      return `${where}: ${issue.message}`;
    });
    return {
      status: 400,
      body: { error: { code: "bad_request", message: problems.join("; "), details: { problems } } },
    };
  }
  const fastifyError = error as Partial<FastifyError>;
  const known = fastifyError.code === undefined ? undefined : FASTIFY_CODES[fastifyError.code];
  if (known !== undefined)
    return { status: known.status, body: { error: { code: known.code, message: known.message } } };
  const status = fastifyError.statusCode ?? 500;
  if (status === 429)
    return {
      status,
      body: {
        error: { code: "rate_limited", message: "too many attempts; wait a minute and try again" },
      },
    };
  if (status >= 400 && status < 500)
    return {
      status,
      body: { error: { code: "bad_request", message: fastifyError.message ?? "bad request" } },
    };
  return {
    status: 500,
    body: {
      error: { code: "internal", message: "something went wrong on our side; it has been logged" },
    },
  };
}

/**
 * One error handler for the portal: API requests get ApiErrorBody JSON,
 * pages get the error page (or, for 401, the login page). Only 5xx are
 * logged as errors; 4xx are the caller's to fix.
 */
export function registerErrorHandling(app: PortalApp): void {
  app.setErrorHandler(async (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const { status, body } = classify(error);
    // An outage of the database is not a bug: one warning line, and a hint when to come back.
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ err: error }, "portal request failed: the database is unavailable");
      void reply.header("retry-after", String(DATABASE_RETRY_AFTER_SECONDS));
    } else if (status >= 500) request.log.error({ err: error }, "portal request failed");
    else request.log.info({ status, code: body.error.code }, "request refused");
    if (isApi(request)) return reply.code(status).send(body);
    if (status === 401 && request.method === "GET")
      return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
    return reply.page("error", { title: "Error", status, message: body.error.message }, status);
  });

  app.setNotFoundHandler(async (request, reply) => {
    const message = "there is nothing here";
    if (isApi(request)) return reply.code(404).send({ error: { code: "not_found", message } });
    return reply.page("error", { title: "Not found", status: 404, message }, 404);
  });
}
