import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { stringify as stringifyYaml } from "yaml";
import { NETWORKS, type BridgeNetwork } from "../../src/bridges/networks.ts";
import type { EventId, MatrixUserId, RoomId } from "../../src/shared/ids.ts";
import { escapeRegex } from "../../src/shared/text.ts";
import type { ClientEvent } from "./matrix-user.ts";

/**
 * A stand-in for a mautrix bridge on a real homeserver (the bridges cannot
 * run here, see ENVIRONMENT.md): a second appservice registration with the
 * bridge's bot and ghost namespace, speaking the Application Service API
 * over real HTTP. It does what the Matrix side of a bridge does and nothing
 * of the remote side: it makes portal rooms (with the m.bridge state
 * events), posts as ghosts and as the bot, records what the homeserver
 * pushes to it (what a real bridge would relay to the remote network), and
 * answers the set-relay command with the real bridges' texts.
 */
export interface StandInBridge {
  readonly network: BridgeNetwork;
  /** Give it to the test homeserver, e.g. appserviceRegistrations[`stand-in-${network}.yaml`]. */
  readonly registrationYaml: string;
  /** @<botLocalpart>:<server> */
  readonly botUserId: MatrixUserId;
  /**
   * When set, the bot answers set-relay with this text (a failure, as the
   * real bridge words it) instead of its success text. Tests may change it
   * at any time; it applies to the next command.
   */
  failSetRelay: string | undefined;
  /** @<ghostPrefix><remoteId>:<server> */
  ghostId(remoteId: string): MatrixUserId;
  /** Makes requests to the homeserver at `clientUrl` (transactions are accepted from creation on). */
  start(clientUrl: string): Promise<void>;
  /**
   * As the bridge bot: a public group room named `name`, with m.bridge and
   * uk.half-shot.bridge state (MSC2346) as mautrix bridges set them,
   * inviting `invite`.
   */
  createPortal(name: string, invite: readonly MatrixUserId[]): Promise<RoomId>;
  /** Posts as a ghost (registered and joined as needed). */
  say(
    ghost: MatrixUserId,
    roomId: RoomId,
    text: string,
    options?: {
      threadRootId?: EventId;
      replyTo?: EventId;
      msgtype?: "m.text" | "m.notice";
      html?: string;
    },
  ): Promise<EventId>;
  /** Posts as the bridge bot (joined as needed). */
  botSays(roomId: RoomId, text: string, msgtype?: "m.text" | "m.notice"): Promise<EventId>;
  /** As the bridge bot: a direct chat with `userId` (the bridge's management room for that user). */
  openManagementRoom(userId: MatrixUserId): Promise<RoomId>;
  /** Every event the homeserver pushed to the bridge in `roomId`, in order. */
  events(roomId: RoomId): readonly ClientEvent[];
  /** Resolves with the first pushed event in `roomId` matching `predicate` (already received ones count). */
  waitFor(
    roomId: RoomId,
    predicate: (event: ClientEvent) => boolean,
    timeoutMs?: number,
  ): Promise<ClientEvent>;
  stop(): Promise<void>;
}

export interface StandInBridgeOptions {
  readonly network: BridgeNetwork;
  readonly serverName: string;
  /** Initial value of `failSetRelay`. */
  readonly failSetRelay?: string;
}

const DEFAULT_WAIT_MS = 30_000;
const POLL_INTERVAL_MS = 25;
const BIND_HOST = "127.0.0.1";

/** The relay login's remote name the stand-in reports (bridgev2 success text). */
export const STAND_IN_REMOTE_NAME = "Switchboard relay";
/** The webhook id the Discord stand-in reports. */
export const STAND_IN_WEBHOOK_ID = "1180000000000000001";

/**
 * The bot's answer to a successful set-relay, as the real bridge words it:
 * bridgev2 (mautrix-go bridgev2/commands/relay.go) and mautrix-discord
 * (commands.go fnSetRelay, `--create <name>`).
 */
export function setRelaySuccessText(
  network: BridgeNetwork,
  sender: MatrixUserId,
  args: readonly string[],
): { body: string; html: string } {
  if (NETWORKS[network].api === "discord-v1") {
    const createAt = args.findIndex((arg) => arg === "--create" || arg === "-create");
    const name =
      createAt >= 0 && args.length > createAt + 1 ? args.slice(createAt + 1).join(" ") : "mautrix";
    const text = `Saved webhook ${name} (${STAND_IN_WEBHOOK_ID}) as portal relay webhook`;
    return { body: text, html: text };
  }
  return {
    body: `Messages sent by users who haven't logged in will now be relayed through ${STAND_IN_REMOTE_NAME} (${sender}'s login)`,
    html: `Messages sent by users who haven't logged in will now be relayed through ${STAND_IN_REMOTE_NAME} (<a href="https://matrix.to/#/${sender}">${sender}</a>'s login)`,
  };
}

class MatrixRequestError extends Error {
  readonly status: number;
  readonly errcode: string | undefined;
  constructor(method: string, path: string, status: number, body: unknown) {
    super(`${method} ${path} -> ${String(status)} ${JSON.stringify(body)}`);
    this.status = status;
    this.errcode = (body as { errcode?: string } | null)?.errcode;
  }
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function reply(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

export async function createStandInBridge(options: StandInBridgeOptions): Promise<StandInBridge> {
  const { network, serverName } = options;
  const descriptor = NETWORKS[network];
  const asToken = randomBytes(24).toString("base64url");
  const hsToken = randomBytes(24).toString("base64url");
  const botUserId = `@${descriptor.botLocalpart}:${serverName}` as MatrixUserId;
  const ghostId = (remoteId: string): MatrixUserId =>
    `@${descriptor.ghostPrefix}${remoteId}:${serverName}` as MatrixUserId;
  const ours = (userId: string): boolean =>
    userId === botUserId ||
    (userId.startsWith(`@${descriptor.ghostPrefix}`) && userId.endsWith(`:${serverName}`));

  const received = new Map<string, ClientEvent[]>();
  const seenTransactions = new Set<string>();
  const registered = new Set<string>([botUserId]);
  const joined = new Set<string>();
  const pending = new Set<Promise<unknown>>();
  let clientUrl: string | undefined;

  const request = async <T = Record<string, unknown>>(
    asUser: MatrixUserId,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<T> => {
    if (clientUrl === undefined) throw new Error("stand-in bridge not started");
    const separator = path.includes("?") ? "&" : "?";
    const url = `${clientUrl}${path}${separator}user_id=${encodeURIComponent(asUser)}`;
    const response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${asToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as T;
    if (!response.ok) throw new MatrixRequestError(method, path, response.status, json);
    return json;
  };

  const ensureRegistered = async (userId: MatrixUserId): Promise<void> => {
    if (registered.has(userId)) return;
    const localpart = userId.slice(1, userId.indexOf(":"));
    try {
      await request(userId, "POST", "/_matrix/client/v3/register", {
        type: "m.login.application_service",
        username: localpart,
        inhibit_login: true,
      });
    } catch (error) {
      if (!(error instanceof MatrixRequestError && error.errcode === "M_USER_IN_USE")) throw error;
    }
    registered.add(userId);
  };

  const ensureJoined = async (userId: MatrixUserId, roomId: RoomId): Promise<void> => {
    const key = `${userId} ${roomId}`;
    if (joined.has(key)) return;
    await ensureRegistered(userId);
    await request(userId, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    joined.add(key);
  };

  const send = async (
    sender: MatrixUserId,
    roomId: RoomId,
    content: Record<string, unknown>,
  ): Promise<EventId> => {
    const { event_id } = await request<{ event_id: string }>(
      sender,
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${randomUUID()}`,
      content,
    );
    return event_id as EventId;
  };

  const botSays = async (
    roomId: RoomId,
    text: string,
    msgtype: "m.text" | "m.notice" = "m.notice",
    html?: string,
  ): Promise<EventId> => {
    await ensureJoined(botUserId, roomId);
    return send(botUserId, roomId, {
      msgtype,
      body: text,
      ...(html === undefined || html === text
        ? {}
        : { format: "org.matrix.custom.html", formatted_body: html }),
      "m.mentions": {},
    });
  };

  /** What the bridge bot does with a pushed event: accept invites, answer commands. */
  const react = async (event: ClientEvent): Promise<void> => {
    const roomId = event.room_id as RoomId;
    if (
      event.type === "m.room.member" &&
      event.state_key === botUserId &&
      event.content.membership === "invite"
    ) {
      await ensureJoined(botUserId, roomId);
      return;
    }
    if (event.type !== "m.room.message" || ours(event.sender)) return;
    const body = typeof event.content.body === "string" ? event.content.body.trim() : "";
    const words = body.split(/\s+/);
    if (words[0] !== descriptor.commandPrefix) return;
    const [command, ...args] = words.slice(1);
    if (command !== "set-relay") {
      await botSays(roomId, "Unknown command, use the `help` command for help.");
      return;
    }
    const failure = bridge.failSetRelay;
    if (failure !== undefined) {
      await botSays(roomId, failure);
      return;
    }
    const success = setRelaySuccessText(network, event.sender as MatrixUserId, args);
    await botSays(roomId, success.body, "m.notice", success.html);
  };

  const track = (work: Promise<unknown>): void => {
    const settled = work.catch((error: unknown) => {
      // A failing reaction must show in the test's output, not vanish.
      process.stderr.write(`stand-in ${network} bridge: ${String(error)}\n`);
    });
    pending.add(settled);
    void settled.finally(() => pending.delete(settled));
  };

  const handle = async (incoming: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(incoming.url ?? "/", `http://${BIND_HOST}`);
    const header = incoming.headers.authorization;
    const token = header?.startsWith("Bearer ")
      ? header.slice("Bearer ".length)
      : (url.searchParams.get("access_token") ?? undefined);
    if (token === undefined) {
      reply(response, 401, { errcode: "M_MISSING_TOKEN", error: "Missing token" });
      return;
    }
    if (token !== hsToken) {
      reply(response, 403, { errcode: "M_FORBIDDEN", error: "Bad token" });
      return;
    }
    const path = url.pathname.replace(/^\/_matrix\/app\/v1/, "");
    const transaction = /^\/transactions\/([^/]+)$/.exec(path);
    if (incoming.method === "PUT" && transaction !== null) {
      const txnId = decodeURIComponent(transaction[1] ?? "");
      const body = JSON.parse(await readBody(incoming)) as { events?: ClientEvent[] };
      if (!seenTransactions.has(txnId)) {
        seenTransactions.add(txnId);
        for (const event of body.events ?? []) {
          if (event.room_id === undefined) continue;
          const list = received.get(event.room_id) ?? [];
          list.push(event);
          received.set(event.room_id, list);
          track(react(event));
        }
      }
      reply(response, 200, {});
      return;
    }
    const userQuery = /^\/users\/([^/]+)$/.exec(path);
    if (incoming.method === "GET" && userQuery !== null) {
      const userId = decodeURIComponent(userQuery[1] ?? "") as MatrixUserId;
      if (!ours(userId)) {
        reply(response, 404, { errcode: "M_NOT_FOUND", error: "Not a ghost of this bridge" });
        return;
      }
      await ensureRegistered(userId);
      reply(response, 200, {});
      return;
    }
    if (incoming.method === "POST" && path === "/ping") {
      reply(response, 200, {});
      return;
    }
    reply(response, 404, { errcode: "M_NOT_FOUND", error: "Unrecognized request" });
  };

  const server: Server = createServer((incoming, response) => {
    handle(incoming, response).catch((error: unknown) => {
      reply(response, 500, { errcode: "M_UNKNOWN", error: String(error) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: BIND_HOST, port: 0 }, resolve);
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port assigned");

  const registrationYaml = stringifyYaml({
    id: `stand-in-${network}`,
    url: `http://${BIND_HOST}:${String(address.port)}`,
    as_token: asToken,
    hs_token: hsToken,
    sender_localpart: descriptor.botLocalpart,
    rate_limited: false,
    namespaces: {
      users: [
        {
          regex: `@${escapeRegex(descriptor.ghostPrefix)}.*:${escapeRegex(serverName)}`,
          exclusive: true,
        },
      ],
      aliases: [],
      rooms: [],
    },
  });

  const bridge: StandInBridge = {
    network,
    registrationYaml,
    botUserId,
    failSetRelay: options.failSetRelay,
    ghostId,
    async start(url) {
      clientUrl = url.replace(/\/+$/, "");
      await ensureRegistered(botUserId);
    },
    async createPortal(name, invite) {
      const remoteChannelId = randomBytes(6).toString("hex");
      const bridgeInfo = {
        bridgebot: botUserId,
        creator: botUserId,
        protocol: { id: network, displayname: descriptor.displayName },
        network: { id: "stand-in-workspace", displayname: "Stand-in workspace" },
        channel: { id: remoteChannelId, displayname: name },
      };
      const stateKey = `fi.mau.${network}://${network}/stand-in-workspace/${remoteChannelId}`;
      const { room_id } = await request<{ room_id: string }>(
        botUserId,
        "POST",
        "/_matrix/client/v3/createRoom",
        {
          preset: "public_chat",
          name,
          invite,
          initial_state: [
            { type: "m.bridge", state_key: stateKey, content: bridgeInfo },
            { type: "uk.half-shot.bridge", state_key: stateKey, content: bridgeInfo },
          ],
        },
      );
      joined.add(`${botUserId} ${room_id}`);
      return room_id as RoomId;
    },
    async say(ghost, roomId, text, sayOptions = {}) {
      await ensureJoined(ghost, roomId);
      const content: Record<string, unknown> = {
        msgtype: sayOptions.msgtype ?? "m.text",
        body: text,
      };
      if (sayOptions.html !== undefined) {
        content.format = "org.matrix.custom.html";
        content.formatted_body = sayOptions.html;
      }
      if (sayOptions.threadRootId !== undefined) {
        content["m.relates_to"] = {
          rel_type: "m.thread",
          event_id: sayOptions.threadRootId,
          is_falling_back: sayOptions.replyTo === undefined,
          "m.in_reply_to": { event_id: sayOptions.replyTo ?? sayOptions.threadRootId },
        };
      } else if (sayOptions.replyTo !== undefined) {
        content["m.relates_to"] = { "m.in_reply_to": { event_id: sayOptions.replyTo } };
      }
      return send(ghost, roomId, content);
    },
    botSays: (roomId, text, msgtype) => botSays(roomId, text, msgtype),
    async openManagementRoom(userId) {
      const { room_id } = await request<{ room_id: string }>(
        botUserId,
        "POST",
        "/_matrix/client/v3/createRoom",
        { preset: "private_chat", is_direct: true, invite: [userId] },
      );
      joined.add(`${botUserId} ${room_id}`);
      return room_id as RoomId;
    },
    events: (roomId) => received.get(roomId) ?? [],
    async waitFor(roomId, predicate, timeoutMs = DEFAULT_WAIT_MS) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = received.get(roomId)?.find(predicate);
        if (found !== undefined) return found;
        if (Date.now() > deadline)
          throw new Error(
            `stand-in ${network} bridge: timed out waiting for an event in ${roomId}; got ${JSON.stringify(
              (received.get(roomId) ?? []).map((e) => [
                e.type,
                e.sender,
                e.content.body ?? e.content.membership,
              ]),
            )}`,
          );
        await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
      }
    },
    async stop() {
      await Promise.all([...pending]);
      server.closeAllConnections();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
  return bridge;
}
