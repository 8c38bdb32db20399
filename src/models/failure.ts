import * as AnthropicErrors from "@anthropic-ai/sdk";
import * as OpenAIErrors from "openai";
import { AppError, type ErrorCode } from "../shared/errors.ts";
import type { ModelProviderName } from "./types.ts";

/**
 * Why a model call failed, in terms an admin can act on:
 * - auth: the API key was rejected (401/403);
 * - rate_limited: 429 (or exhausted quota) after the SDK's retries;
 * - timeout: no answer within the deadline, or the stream went silent;
 * - unavailable: 5xx or unreachable after the SDK's retries;
 * - bad_request: the vendor refused the request itself (unknown model, prompt too long);
 * - bad_response: garbage, or a stream that ended without its final event;
 * - aborted: the caller cancelled through `ModelRequest.signal`; not a fault.
 */
export type ModelFailureKind =
  "auth" | "rate_limited" | "timeout" | "unavailable" | "bad_request" | "bad_response" | "aborted";

const ERROR_CODE: Record<ModelFailureKind, ErrorCode> = {
  auth: "upstream_failed",
  rate_limited: "limit_reached",
  timeout: "upstream_failed",
  unavailable: "unavailable",
  bad_request: "upstream_failed",
  bad_response: "upstream_failed",
  aborted: "upstream_failed",
};

/** Short notices fit for a chat room: they name the provider and what an admin can do, never the key. */
const USER_MESSAGE: Record<ModelFailureKind, (provider: string) => string> = {
  auth: (p) => `The ${p} API key was rejected. A tenant admin can set a new key.`,
  rate_limited: (p) =>
    `The ${p} API is rate-limiting this account or its quota is used up. Try again in a minute; a tenant admin can check the ${p} plan and billing.`,
  timeout: (p) =>
    `The ${p} API did not answer in time. Try again; if it keeps happening, an admin can check the ${p} status page or raise models.timeoutMs.`,
  unavailable: (p) =>
    `The ${p} API is unavailable right now. Try again later; an admin can check the ${p} status page and the configured base URL.`,
  bad_request: (p) =>
    `The ${p} API refused the request, usually because the configured model does not exist or the conversation is too long. A tenant admin can check the agent's model setting.`,
  bad_response: (p) =>
    `The ${p} API sent an incomplete or malformed answer. Try again; if it keeps happening, an admin can check the configured base URL.`,
  aborted: (p) => `The request to ${p} was cancelled.`,
};

/** Longest vendor explanation kept in `details`, so a huge error page cannot bloat logs or notices. */
const VENDOR_MESSAGE_MAX_CHARS = 300;

export class ModelFailure extends AppError {
  readonly kind: ModelFailureKind;
  readonly provider: ModelProviderName;
  /** HTTP status the vendor answered with, when there was one. */
  readonly status: number | undefined;

  constructor(
    provider: ModelProviderName,
    kind: ModelFailureKind,
    options?: { status?: number | undefined; vendorMessage?: string | undefined; cause?: unknown },
  ) {
    const details: Record<string, unknown> = { provider, kind };
    if (options?.status !== undefined) details["status"] = options.status;
    if (options?.vendorMessage !== undefined) details["vendorMessage"] = options.vendorMessage;
    super(ERROR_CODE[kind], USER_MESSAGE[kind](provider), { details, cause: options?.cause });
    this.name = "ModelFailure";
    this.kind = kind;
    this.provider = provider;
    this.status = options?.status;
  }

  /** Worth trying again later (not now: the SDK already retried). */
  get transient(): boolean {
    return this.kind === "rate_limited" || this.kind === "timeout" || this.kind === "unavailable";
  }
}

export function isModelFailure(error: unknown): error is ModelFailure {
  return error instanceof ModelFailure;
}

/** The status-less error types both vendors put in error bodies and in-stream error events. */
function kindOfErrorType(type: string | undefined): ModelFailureKind | undefined {
  switch (type) {
    case "authentication_error":
    case "permission_error":
    case "invalid_api_key":
      return "auth";
    case "rate_limit_error":
    case "rate_limit_exceeded":
    case "insufficient_quota":
    case "requests":
    case "tokens":
      return "rate_limited";
    case "invalid_request_error":
    case "not_found_error":
    case "request_too_large":
      return "bad_request";
    case "timeout_error":
      return "timeout";
    case "overloaded_error":
    case "api_error":
    case "server_error":
      return "unavailable";
    default:
      return undefined;
  }
}

function kindOfStatus(status: number): ModelFailureKind {
  if (status === 401 || status === 403) return "auth";
  // 402: Anthropic's "payment required"; to an admin it is the same problem as a used-up quota.
  if (status === 429 || status === 402) return "rate_limited";
  if (status === 408 || status === 504) return "timeout";
  if (status >= 500 || status === 409 || status === 499) return "unavailable";
  return "bad_request";
}

type VendorApiError = OpenAIErrors.APIError | AnthropicErrors.APIError;

function isVendorApiError(error: unknown): error is VendorApiError {
  return error instanceof OpenAIErrors.APIError || error instanceof AnthropicErrors.APIError;
}

/** The vendor's own explanation, trimmed and with the key scrubbed out should a proxy echo it. */
function vendorMessageOf(error: VendorApiError, apiKey: string): string | undefined {
  const body: unknown = error.error;
  let message: unknown;
  if (typeof body === "object" && body !== null) {
    const nested = (body as { error?: unknown }).error;
    message =
      typeof nested === "object" && nested !== null
        ? (nested as { message?: unknown }).message
        : (body as { message?: unknown }).message;
  }
  if (typeof message !== "string" || message.length === 0) return undefined;
  const scrubbed = apiKey.length > 0 ? message.split(apiKey).join("[key]") : message;
  return scrubbed.slice(0, VENDOR_MESSAGE_MAX_CHARS);
}

function errorTypeOf(error: VendorApiError): string | undefined {
  const body: unknown = error.error;
  if (typeof body !== "object" || body === null) return undefined;
  const nested = (body as { error?: unknown }).error;
  const source = typeof nested === "object" && nested !== null ? nested : body;
  const type = (source as { type?: unknown; code?: unknown }).type;
  const code = (source as { code?: unknown }).code;
  // OpenAI puts the precise reason in `code` ("invalid_api_key", "insufficient_quota").
  if (typeof code === "string" && kindOfErrorType(code) !== undefined) return code;
  return typeof type === "string" ? type : undefined;
}

/**
 * Translates whatever an SDK call or stream threw into a ModelFailure. Callers
 * that know the request was aborted on purpose (deadline, caller) build the
 * failure themselves instead: the SDK reports both as a plain abort.
 */
export function toModelFailure(
  provider: ModelProviderName,
  error: unknown,
  apiKey: string,
): ModelFailure {
  if (error instanceof ModelFailure) return error;
  if (
    error instanceof OpenAIErrors.APIConnectionTimeoutError ||
    error instanceof AnthropicErrors.APIConnectionTimeoutError
  ) {
    return new ModelFailure(provider, "timeout", { cause: error });
  }
  if (
    error instanceof OpenAIErrors.APIUserAbortError ||
    error instanceof AnthropicErrors.APIUserAbortError
  ) {
    return new ModelFailure(provider, "aborted", { cause: error });
  }
  if (
    error instanceof OpenAIErrors.APIConnectionError ||
    error instanceof AnthropicErrors.APIConnectionError
  ) {
    return new ModelFailure(provider, "unavailable", { cause: error });
  }
  if (isVendorApiError(error)) {
    const status = error.status;
    // Errors inside an SSE stream carry no status, only the vendor's error type.
    const kind =
      status === undefined
        ? (kindOfErrorType(errorTypeOf(error)) ?? "unavailable")
        : kindOfStatus(status);
    const vendorMessage = kind === "auth" ? undefined : vendorMessageOf(error, apiKey);
    return new ModelFailure(provider, kind, { status, vendorMessage, cause: error });
  }
  // JSON that does not parse, a body cut off mid-chunk ("terminated"), an SDK
  // complaint about the response shape: all mean the answer cannot be trusted.
  return new ModelFailure(provider, "bad_response", { cause: error });
}
