import { AppError, describeError } from "../shared/errors.ts";

/**
 * Docker Engine API failures (as dockerode reports them: statusCode and the
 * engine's JSON message, or a socket error code) turned into the driver
 * contract's AppErrors, with the operation named and no request details
 * (which could hold more than we want in provisioning.last_error).
 */
const SOCKET_ERRORS = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EACCES",
  "EPIPE",
  "ETIMEDOUT",
]);

interface EngineFailure {
  statusCode?: number;
  json?: { message?: string } | null;
  code?: string;
}

export function statusOf(error: unknown): number | undefined {
  return (error as EngineFailure | null)?.statusCode;
}

/**
 * Engine errors as AppErrors. A 4xx means the request cannot work as given
 * (callers handle the 404s and 409s they expect before this); 5xx and
 * socket failures are transient.
 */
export function engineError(operation: string, error: unknown): AppError {
  if (error instanceof AppError) return error;
  const failure = (error ?? {}) as EngineFailure;
  if (failure.statusCode === undefined) {
    const unreachable = failure.code !== undefined && SOCKET_ERRORS.has(failure.code);
    return new AppError(
      "unavailable",
      unreachable
        ? `docker: ${operation}: engine unreachable (${failure.code ?? ""})`
        : `docker: ${operation} failed: ${describeError(error)}`,
      { cause: error },
    );
  }
  const message = failure.json?.message ?? describeError(error);
  const code =
    failure.statusCode >= 400 && failure.statusCode < 500 ? "bad_request" : "unavailable";
  return new AppError(
    code,
    `docker: ${operation} failed (HTTP ${failure.statusCode}): ${message}`,
    {
      cause: error,
    },
  );
}

export async function engine<T>(operation: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw engineError(operation, error);
  }
}

/** Resolves to undefined when the engine answers 404 (and 304 for start/stop: "already"). */
export async function tolerant<T>(
  operation: string,
  call: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    const status = statusOf(error);
    if (status === 404 || status === 304) return undefined;
    throw engineError(operation, error);
  }
}
