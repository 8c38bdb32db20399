import { randomUUID } from "node:crypto";

/** A room event as the client-server API returns it. */
export interface ClientEvent {
  readonly event_id: string;
  readonly room_id?: string;
  readonly type: string;
  readonly sender: string;
  readonly content: Record<string, unknown>;
  readonly state_key?: string;
  readonly origin_server_ts: number;
}

const DEFAULT_WAIT_MS = 30_000;
const SYNC_TIMEOUT_MS = 5_000;

/**
 * A person on a real homeserver, for end-to-end tests: sends what a Matrix
 * client would send and waits for what a client would see (long-polling
 * /sync, never fixed sleeps).
 */
export class MatrixTestUser {
  readonly userId: string;
  readonly #clientUrl: string;
  readonly #accessToken: string;
  #since: string | undefined;
  /** Every timeline event seen so far, by room. */
  readonly timeline = new Map<string, ClientEvent[]>();

  constructor(clientUrl: string, userId: string, accessToken: string) {
    this.#clientUrl = clientUrl;
    this.userId = userId;
    this.#accessToken = accessToken;
  }

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<T> {
    const response = await fetch(`${this.#clientUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as T;
    if (!response.ok)
      throw new Error(`${method} ${path} -> ${response.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** `trusted_private_chat` is what clients use for DMs: invitees get the creator's power level. */
  async createRoom(
    options: {
      invite?: string[];
      isDirect?: boolean;
      name?: string;
      preset?: "private_chat" | "trusted_private_chat";
    } = {},
  ): Promise<string> {
    const { room_id } = await this.request<{ room_id: string }>(
      "POST",
      "/_matrix/client/v3/createRoom",
      {
        preset: options.preset ?? "private_chat",
        invite: options.invite ?? [],
        is_direct: options.isDirect ?? false,
        ...(options.name === undefined ? {} : { name: options.name }),
      },
    );
    return room_id;
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.request("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, {
      user_id: userId,
    });
  }

  async send(roomId: string, content: Record<string, unknown>): Promise<string> {
    const { event_id } = await this.request<{ event_id: string }>(
      "PUT",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${randomUUID()}`,
      content,
    );
    return event_id;
  }

  async sendText(
    roomId: string,
    body: string,
    extra: Record<string, unknown> = {},
  ): Promise<string> {
    return this.send(roomId, { msgtype: "m.text", body, ...extra });
  }

  async joinedMembers(roomId: string): Promise<string[]> {
    const { joined } = await this.request<{ joined: Record<string, unknown> }>(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`,
    );
    return Object.keys(joined);
  }

  /** Syncs until an event in the room matches, or fails after `timeoutMs`. Already-seen events count. */
  async waitForEvent(
    roomId: string,
    predicate: (event: ClientEvent) => boolean,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<ClientEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.timeline.get(roomId)?.find(predicate);
      if (found !== undefined) return found;
      if (Date.now() > deadline)
        throw new Error(
          `timed out waiting for an event in ${roomId}; saw ${JSON.stringify(this.timeline.get(roomId)?.map((e) => [e.type, e.sender, e.content.body]) ?? [])}`,
        );
      await this.sync(Math.min(SYNC_TIMEOUT_MS, Math.max(0, deadline - Date.now())));
    }
  }

  /** Waits until `userId` has joined the room. */
  async waitForJoin(roomId: string, userId: string, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    await this.waitForEvent(
      roomId,
      (event) =>
        event.type === "m.room.member" &&
        event.state_key === userId &&
        event.content.membership === "join",
      timeoutMs,
    );
  }

  /** Opens a DM with someone (an agent, the bot) and waits until they have joined. */
  async openDm(
    userId: string,
    preset: "private_chat" | "trusted_private_chat" = "trusted_private_chat",
  ): Promise<string> {
    const roomId = await this.createRoom({ invite: [userId], isDirect: true, preset });
    await this.waitForJoin(roomId, userId);
    return roomId;
  }

  /** Waits until `count` events in the room match. */
  async waitForEvents(
    roomId: string,
    predicate: (event: ClientEvent) => boolean,
    count: number,
    timeoutMs = DEFAULT_WAIT_MS,
  ): Promise<ClientEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (this.timeline.get(roomId) ?? []).filter(predicate);
      if (found.length >= count) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out: ${found.length}/${count} matching events in ${roomId}`);
      await this.sync(Math.min(SYNC_TIMEOUT_MS, Math.max(0, deadline - Date.now())));
    }
  }

  async sync(timeoutMs: number): Promise<void> {
    const query = new URLSearchParams({
      timeout: String(timeoutMs),
      filter: JSON.stringify({ room: { timeline: { limit: 200 } }, presence: { types: [] } }),
    });
    if (this.#since !== undefined) query.set("since", this.#since);
    const body = await this.request<{
      next_batch: string;
      rooms?: {
        join?: Record<string, { timeline?: { events?: ClientEvent[] } }>;
        invite?: Record<string, unknown>;
      };
    }>("GET", `/_matrix/client/v3/sync?${query.toString()}`);
    this.#since = body.next_batch;
    for (const [roomId, room] of Object.entries(body.rooms?.join ?? {})) {
      const events = this.timeline.get(roomId) ?? [];
      events.push(...(room.timeline?.events ?? []).map((event) => ({ ...event, room_id: roomId })));
      this.timeline.set(roomId, events);
    }
  }
}

/** Messages sent by `sender`, excluding edits. */
export const messageFrom =
  (sender: string) =>
  (event: ClientEvent): boolean =>
    event.type === "m.room.message" &&
    event.sender === sender &&
    (event.content["m.relates_to"] as { rel_type?: string } | undefined)?.rel_type !== "m.replace";

/** Edits (m.replace) sent by `sender`. */
export const editFrom =
  (sender: string) =>
  (event: ClientEvent): boolean =>
    event.type === "m.room.message" &&
    event.sender === sender &&
    (event.content["m.relates_to"] as { rel_type?: string } | undefined)?.rel_type === "m.replace";

/** The text a reader sees for a message: the latest edit's new content, or the body. */
export function finalText(events: readonly ClientEvent[], original: ClientEvent): string {
  const edits = events.filter(
    (event) =>
      (event.content["m.relates_to"] as { rel_type?: string; event_id?: string } | undefined)
        ?.event_id === original.event_id &&
      (event.content["m.relates_to"] as { rel_type?: string }).rel_type === "m.replace",
  );
  const last = edits[edits.length - 1];
  return last === undefined
    ? String(original.content.body)
    : String((last.content["m.new_content"] as { body: string }).body);
}
