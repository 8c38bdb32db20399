import { AppError, describeError } from "../shared/errors.ts";
import type { MatrixUserId } from "../shared/ids.ts";
import type { BridgeNetwork } from "./networks.ts";

/**
 * Requests to a bridge's provisioning API for the relay login
 * (relay-login.ts): the shared secret as a Bearer token and the acting user
 * in `?user_id=`, as mautrix bridges authenticate them; a timeout on every
 * request; answers parsed once, with the bridge's error texts redacted
 * before anyone quotes them, and the failures that mean the same on every
 * endpoint (our secret, the bridge's permissions, its health) mapped here.
 */

/** A Telegram or Discord login connects to the network before answering: give it time. */
const DEFAULT_TIMEOUT_MS = 30_000;
const PROVISIONING_PREFIX = "/_matrix/provision";
/** Longest piece of a bridge's own error text quoted in our messages. */
const MAX_QUOTED_CHARS = 300;
export const AUTH_ERRCODES: ReadonlySet<string> = new Set(["M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"]);
/**
 * Token shapes of the three networks, redacted even when we did not send
 * them: Go errors often echo the URL that carried a token (Telegram's Bot
 * API puts it in the path).
 */
const TOKEN_LIKE: readonly RegExp[] = [
  /xox[a-z]-[A-Za-z0-9-]+/g,
  /xapp-[A-Za-z0-9-]+/g,
  /\d{3,20}:[A-Za-z0-9_-]{30,}/g,
  /[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}/g,
];

/** Where the bridge is and how to authenticate to it. */
export interface ProvisioningTarget {
  /** The bridge's appservice address, where it serves /_matrix/provision. */
  readonly baseUrl: string;
  readonly sharedSecret: string;
  readonly relayUserId: MatrixUserId;
  /** Longest wait for one request (default 30 s). */
  readonly timeoutMs?: number;
  readonly fetch?: typeof fetch;
}

export interface Session {
  readonly target: ProvisioningTarget;
  readonly network: BridgeNetwork;
  /** "the Slack bridge", for messages. */
  readonly bridge: string;
  /** Secrets we hold for this bridge: redacted from anything it says. */
  readonly secrets: readonly string[];
}

/** One answer of the bridge, its body parsed and its error texts already redacted. */
export interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly errcode: string | undefined;
  readonly error: string | undefined;
  /** bridgev2's `fi.mau.internal_error`: the connector's own error. */
  readonly internalError: string | undefined;
}

export interface RequestOptions {
  readonly query?: Readonly<Record<string, string>>;
  readonly body?: unknown;
  /** A shorter limit than the target's, for best-effort requests. */
  readonly timeoutMs?: number;
}

/** Sends one request; connection failures and timeouts are `unavailable`, any HTTP answer is returned. */
export async function request(
  session: Session,
  method: "GET" | "POST",
  path: string,
  init: RequestOptions = {},
): Promise<Answer> {
  const options = session.target;
  const url = new URL(PROVISIONING_PREFIX + path, options.baseUrl);
  url.searchParams.set("user_id", options.relayUserId);
  for (const [key, value] of Object.entries(init.query ?? {})) url.searchParams.set(key, value);
  const timeoutMs = Math.min(init.timeoutMs ?? Infinity, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const headers: Record<string, string> = {
    accept: "application/json",
    authorization: `Bearer ${options.sharedSecret}`,
  };
  if (init.body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  let text: string;
  try {
    response = await (options.fetch ?? fetch)(url, {
      method,
      headers,
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await response.text();
  } catch (error) {
    if (error instanceof Error && error.name === "TimeoutError") {
      throw new AppError(
        "unavailable",
        `${session.bridge} did not answer within ${timeoutMs / 1000} s`,
      );
    }
    throw new AppError(
      "unavailable",
      `${session.bridge} is not reachable at ${url.origin} (${redact(causeOf(error), session.secrets)})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = text.length === 0 ? {} : JSON.parse(text);
  } catch {
    parsed = {};
  }
  const body = objectOf(parsed);
  const quote = (value: unknown): string | undefined => {
    const raw = stringOf(value);
    return raw === undefined ? undefined : redact(raw, session.secrets);
  };
  return {
    status: response.status,
    body,
    errcode: stringOf(body.errcode),
    error: quote(body.error),
    internalError: quote(body["fi.mau.internal_error"]),
  };
}

function causeOf(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (
    typeof cause === "object" &&
    cause !== null &&
    "code" in cause &&
    typeof cause.code === "string"
  ) {
    return cause.code;
  }
  return describeError(cause ?? error);
}

export function expectOk(session: Session, answer: Answer, doing: string): Answer {
  if (answer.status >= 200 && answer.status < 300) return answer;
  throw failure(session, answer, doing);
}

/** Failures without a login-level meaning: our secret, the bridge's permissions, its health. */
export function failure(session: Session, answer: Answer, doing: string): AppError {
  const said = `HTTP ${answer.status}${answer.errcode === undefined ? "" : ` ${answer.errcode}`}${answer.error === undefined ? "" : `: ${answer.error}`}`;
  if (answer.status === 401 && AUTH_ERRCODES.has(answer.errcode ?? "")) {
    return new AppError(
      "internal",
      `${session.bridge} rejected Switchboard's provisioning secret (its config and Switchboard's differ)`,
    );
  }
  if (answer.status === 403 && answer.errcode === "M_FORBIDDEN") {
    return new AppError(
      "internal",
      `${session.bridge} does not let the relay account log in (${said}); check the bridge's permissions`,
    );
  }
  if (answer.status >= 500) {
    return new AppError(
      "unavailable",
      `${session.bridge} failed while ${doing} (${said}); try again later`,
    );
  }
  return unexpectedAnswer(session, answer, doing);
}

export function unexpectedAnswer(session: Session, answer: Answer, doing: string): AppError {
  return new AppError(
    "upstream_failed",
    `${session.bridge} answered unexpectedly while ${doing} (HTTP ${answer.status}${answer.errcode === undefined ? "" : ` ${answer.errcode}`})`,
  );
}

/** Removes our secrets and anything shaped like a network token, and keeps quotes short. */
function redact(text: string, secrets: readonly string[]): string {
  let result = text;
  for (const secret of secrets)
    if (secret.length > 0) result = result.split(secret).join("[redacted]");
  for (const pattern of TOKEN_LIKE) result = result.replace(pattern, "[redacted]");
  return result.length > MAX_QUOTED_CHARS ? `${result.slice(0, MAX_QUOTED_CHARS)}…` : result;
}

export function objectOf(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

export function arrayOf(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}

export function stringOf(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
