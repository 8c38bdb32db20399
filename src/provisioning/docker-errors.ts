import { AppError, describeError } from "../shared/errors.ts";

/**
 * Docker Engine API failures (as dockerode reports them: statusCode and the
 * engine's JSON message, or a socket error code) turned into the driver
 * contract's AppErrors, with the operation named and no request details
 * (which could hold more than we want in provisioning.last_error).
 */
interface EngineFailure {
  statusCode?: number;
  json?: { message?: string } | null;
  code?: string;
}

export function statusOf(error: unknown): number | undefined {
  return (error as EngineFailure | null)?.statusCode;
}

/** Engine errors as AppErrors: 4xx (other than 404/409) means the spec is wrong, the rest is transient. */
export function engineError(operation: string, error: unknown): AppError {
  if (error instanceof AppError) return error;
  const failure = (error ?? {}) as EngineFailure;
  if (failure.statusCode === undefined) {
    return new AppError(
      "unavailable",
      `docker: ${operation}: engine unreachable (${failure.code ?? describeError(error)})`,
      {
        cause: error,
      },
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
