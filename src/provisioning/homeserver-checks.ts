import { AppError, describeError } from "../shared/errors.ts";
import { isHealthy } from "../synapse/admin-api.ts";

/**
 * The Matrix calls the provisioner makes as the tenant's appservice (with
 * its as_token): the end-to-end health check and the bootstrap of the
 * management room. Plain fetch: only src/matrix uses the Matrix SDK, and
 * these few calls do not need it. Tokens go in headers, never in URLs.
 */

const REQUEST_TIMEOUT_MS = 15_000;

/** What the reconciler needs to know a homeserver really works; a seam for unit tests. */
export interface HomeserverProbe {
  /** GET /health answers 200. */
  healthy(clientUrl: string): Promise<boolean>;
  /**
   * The homeserver pings our appservice (MSC2659, Matrix 1.7):
   * homeserver -> runtime -> homeserver. Throws an AppError with the
   * homeserver's reason (runtime unreachable, wrong token) when it fails.
   */
  pingAppservice(clientUrl: string, appserviceId: string, asToken: string): Promise<void>;
}

export interface MatrixRoomCreation {
  readonly name: string;
  readonly topic: string;
  readonly invite: readonly string[];
  /** A state event type that marks the room, so a repeated bootstrap finds it instead of making another. */
  readonly markerType: string;
}

async function asRequest(
  what: string,
  url: string,
  asToken: string,
  method: "GET" | "POST",
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${asToken}`,
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new AppError("unavailable", `${what}: homeserver unreachable (${describeError(error)})`);
  }
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    const parsed: unknown = text.length === 0 ? {} : JSON.parse(text);
    if (typeof parsed === "object" && parsed !== null) json = parsed as Record<string, unknown>;
  } catch {
    // Not JSON: the status says enough.
  }
  return { status: response.status, json };
}

function failure(what: string, status: number, json: Record<string, unknown>): AppError {
  const errcode = typeof json.errcode === "string" ? json.errcode : `HTTP ${status}`;
  const reason = typeof json.error === "string" ? `: ${json.error}` : "";
  return new AppError("unavailable", `${what} failed (${errcode}${reason})`);
}

export const matrixProbe: HomeserverProbe = {
  healthy: isHealthy,
  async pingAppservice(clientUrl, appserviceId, asToken) {
    const what = "appservice ping";
    const url = new URL(
      `/_matrix/client/v1/appservice/${encodeURIComponent(appserviceId)}/ping`,
      clientUrl,
    ).toString();
    const { status, json } = await asRequest(what, url, asToken, "POST", {});
    if (status !== 200) throw failure(what, status, json);
  },
};

/**
 * Makes sure the appservice's sender (the service bot) exists as a user.
 * Synapse accepts m.login.application_service registration in the
 * appservice's namespace; an existing user is fine.
 */
export async function ensureAppserviceUser(
  clientUrl: string,
  asToken: string,
  localpart: string,
): Promise<void> {
  const what = `registering @${localpart}`;
  const url = new URL("/_matrix/client/v3/register", clientUrl).toString();
  const { status, json } = await asRequest(what, url, asToken, "POST", {
    type: "m.login.application_service",
    username: localpart,
    inhibit_login: true,
  });
  if (status === 200 || json.errcode === "M_USER_IN_USE") return;
  throw failure(what, status, json);
}

/**
 * Creates a room as the appservice sender unless one it already joined
 * carries the marker state event; returns the room id. Safe to repeat after
 * a crash between creating the room and recording its id.
 */
export async function ensureMarkedRoom(
  clientUrl: string,
  asToken: string,
  room: MatrixRoomCreation,
): Promise<string> {
  const joined = await asRequest(
    "listing the bot's rooms",
    new URL("/_matrix/client/v3/joined_rooms", clientUrl).toString(),
    asToken,
    "GET",
  );
  if (joined.status !== 200) throw failure("listing the bot's rooms", joined.status, joined.json);
  const rooms = Array.isArray(joined.json.joined_rooms) ? joined.json.joined_rooms : [];
  for (const roomId of rooms) {
    if (typeof roomId !== "string") continue;
    const marker = await asRequest(
      "reading a room marker",
      new URL(
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${encodeURIComponent(room.markerType)}/`,
        clientUrl,
      ).toString(),
      asToken,
      "GET",
    );
    if (marker.status === 200) return roomId;
  }
  const created = await asRequest(
    "creating the management room",
    new URL("/_matrix/client/v3/createRoom", clientUrl).toString(),
    asToken,
    "POST",
    {
      name: room.name,
      topic: room.topic,
      preset: "private_chat",
      is_direct: true,
      invite: room.invite,
      initial_state: [{ type: room.markerType, state_key: "", content: { version: 1 } }],
    },
  );
  if (created.status !== 200 || typeof created.json.room_id !== "string")
    throw failure("creating the management room", created.status, created.json);
  return created.json.room_id;
}
