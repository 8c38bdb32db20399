import { createHmac } from "node:crypto";
import { AppError, describeError, type ErrorCode } from "../shared/errors.ts";

/**
 * The few homeserver HTTP calls Switchboard makes as the operator of the
 * homeserver (not as an appservice): health, shared-secret registration and
 * password login. Plain fetch; the Matrix SDK lives in src/matrix.
 */

/** One homeserver request never waits longer than this. */
const REQUEST_TIMEOUT_MS = 30_000;
/** A health probe answers within this or counts as "not healthy yet". */
const HEALTH_TIMEOUT_MS = 2_000;

export interface MatrixSession {
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
}

interface MatrixErrorBody {
  readonly errcode?: string;
  readonly error?: string;
}

function endpoint(clientUrl: string, path: string): string {
  return new URL(path, clientUrl).toString();
}

/** The error code of a failed homeserver response, from the Matrix errcode first, then the status. */
function errorCodeFor(status: number, errcode: string | undefined): ErrorCode {
  switch (errcode) {
    case "M_USER_IN_USE":
      return "conflict";
    case "M_FORBIDDEN":
      return "forbidden";
    case "M_UNKNOWN_TOKEN":
    case "M_MISSING_TOKEN":
      return "unauthorized";
    case "M_LIMIT_EXCEEDED":
      return "limit_reached";
    case "M_INVALID_USERNAME":
    case "M_BAD_JSON":
    case "M_WEAK_PASSWORD":
      return "bad_request";
    default:
      break;
  }
  if (status === 401) return "unauthorized";
  if (status === 403) return "forbidden";
  if (status === 429) return "limit_reached";
  if (status === 400) return "bad_request";
  return "upstream_failed";
}

/**
 * Sends one JSON request and returns the parsed body of a 2xx answer. Throws
 * an AppError whose code reflects the Matrix error (`what` names the action
 * in the message); network failures are `unavailable`.
 */
async function requestJson(
  what: string,
  url: string,
  init: { method: "GET" | "POST"; body?: unknown; accessToken?: string },
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (init.body !== undefined) headers["content-type"] = "application/json";
  if (init.accessToken !== undefined) headers.authorization = `Bearer ${init.accessToken}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: init.method,
      headers,
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new AppError("unavailable", `${what}: homeserver unreachable (${describeError(error)})`, {
      cause: error,
    });
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text.length === 0 ? {} : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const matrixError = (typeof body === "object" && body !== null ? body : {}) as MatrixErrorBody;
    const reason = matrixError.error ?? `HTTP ${response.status}`;
    throw new AppError(errorCodeFor(response.status, matrixError.errcode), `${what}: ${reason}`, {
      details: {
        status: response.status,
        ...(matrixError.errcode === undefined ? {} : { errcode: matrixError.errcode }),
      },
    });
  }
  if (typeof body !== "object" || body === null) {
    throw new AppError(
      "upstream_failed",
      `${what}: homeserver answered HTTP ${response.status} without a JSON object`,
    );
  }
  return body as Record<string, unknown>;
}

function stringField(what: string, body: Record<string, unknown>, key: string): string {
  const value = body[key];
  if (typeof value !== "string")
    throw new AppError("upstream_failed", `${what}: response has no ${key}`);
  return value;
}

/** True when GET /health answers 200; false on any error, including timeouts. */
export async function isHealthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(endpoint(clientUrl, "/health"), {
      signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
    });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

export interface SharedSecretUser {
  readonly localpart: string;
  readonly password: string;
  readonly admin: boolean;
  readonly displayName?: string;
}

/** HMAC-SHA1 over nonce\0user\0password\0admin|notadmin, as Synapse's register servlet checks it. */
export function registrationMac(
  secret: string,
  nonce: string,
  user: Pick<SharedSecretUser, "localpart" | "password" | "admin">,
): string {
  return createHmac("sha1", secret)
    .update(nonce, "utf8")
    .update("\0")
    .update(user.localpart, "utf8")
    .update("\0")
    .update(user.password, "utf8")
    .update("\0")
    .update(user.admin ? "admin" : "notadmin")
    .digest("hex");
}

/**
 * Creates a user through Synapse's shared-secret admin registration (GET a
 * nonce, then POST within 60 s) and returns a logged-in session for it.
 * Errors: conflict when the user exists, forbidden when the secret is wrong,
 * bad_request for an invalid localpart or when the homeserver has no shared
 * secret, unavailable when the homeserver cannot be reached.
 */
export async function registerWithSharedSecret(
  clientUrl: string,
  secret: string,
  user: SharedSecretUser,
): Promise<MatrixSession> {
  const what = `registering @${user.localpart}`;
  const url = endpoint(clientUrl, "/_synapse/admin/v1/register");
  const nonce = stringField(what, await requestJson(what, url, { method: "GET" }), "nonce");
  const body = await requestJson(what, url, {
    method: "POST",
    body: {
      nonce,
      username: user.localpart,
      password: user.password,
      admin: user.admin,
      ...(user.displayName === undefined ? {} : { displayname: user.displayName }),
      mac: registrationMac(secret, nonce, user),
    },
  });
  return {
    userId: stringField(what, body, "user_id"),
    accessToken: stringField(what, body, "access_token"),
    deviceId: stringField(what, body, "device_id"),
  };
}

/**
 * Logs in with a password (m.login.password) and returns a new session
 * (a new device). `user` is a localpart or a full user id. Wrong
 * credentials are `forbidden`.
 */
export async function loginWithPassword(
  clientUrl: string,
  user: string,
  password: string,
  options: { deviceDisplayName?: string } = {},
): Promise<MatrixSession> {
  const what = `logging in as ${user}`;
  const body = await requestJson(what, endpoint(clientUrl, "/_matrix/client/v3/login"), {
    method: "POST",
    body: {
      type: "m.login.password",
      identifier: { type: "m.id.user", user },
      password,
      ...(options.deviceDisplayName === undefined
        ? {}
        : { initial_device_display_name: options.deviceDisplayName }),
    },
  });
  return {
    userId: stringField(what, body, "user_id"),
    accessToken: stringField(what, body, "access_token"),
    deviceId: stringField(what, body, "device_id"),
  };
}

/** Checks an access token with /whoami; returns the user id it belongs to. */
export async function whoAmI(clientUrl: string, accessToken: string): Promise<string> {
  const what = "checking an access token";
  const body = await requestJson(what, endpoint(clientUrl, "/_matrix/client/v3/account/whoami"), {
    method: "GET",
    accessToken,
  });
  return stringField(what, body, "user_id");
}
