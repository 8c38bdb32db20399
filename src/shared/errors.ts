/**
 * One error taxonomy for the whole service. Every adapter (HTTP routes, the
 * appservice endpoint, chat commands) maps these codes to its own surface:
 * an HTTP status, a Matrix error code, or a short notice in a room.
 * Messages are meant for the user: precise, no secrets, no stack traces.
 */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "limit_reached"
  | "unavailable"
  | "upstream_failed"
  | "internal";

const HTTP_STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  limit_reached: 429,
  unavailable: 503,
  upstream_failed: 502,
  internal: 500,
};

export class AppError extends Error {
  readonly code: ErrorCode;
  /** Structured details safe to show the caller (e.g. which field was wrong). */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly #httpStatus: number | undefined;

  /**
   * `options.httpStatus` overrides the code's usual status where one code
   * covers two situations (a plan's limit is `limit_reached` like a rate
   * limit, but retrying later does not help, so it is 403, not 429).
   */
  constructor(
    code: ErrorCode,
    message: string,
    options?: { details?: Record<string, unknown>; cause?: unknown; httpStatus?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.details = options?.details;
    this.#httpStatus = options?.httpStatus;
  }

  get httpStatus(): number {
    return this.#httpStatus ?? HTTP_STATUS[this.code];
  }
}

export const badRequest = (message: string, details?: Record<string, unknown>): AppError =>
  new AppError("bad_request", message, details === undefined ? undefined : { details });
export const notFound = (what: string): AppError => new AppError("not_found", `${what} not found`);
export const conflict = (message: string): AppError => new AppError("conflict", message);

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}

/** The message of any thrown value, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
