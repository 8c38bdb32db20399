import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Appservice, Intent, MatrixClient } from "matrix-bot-sdk";
import type { ChatGateway, OutgoingFile, OutgoingMessage } from "../agents/ports.ts";
import type { Logger } from "../shared/logger.ts";
import type { EventId, MatrixUserId, RoomId } from "../shared/ids.ts";
import { editContent, messageContent } from "./formatting.ts";

const MAX_RATE_LIMIT_RETRIES = 5;
const MAX_RATE_LIMIT_WAIT_MS = 30_000;
const DEFAULT_RATE_LIMIT_WAIT_MS = 1_000;
/** Typing notices expire on their own so a crash never leaves an agent "typing" forever. */
const TYPING_TIMEOUT_MS = 30_000;

interface MatrixErrorLike {
  errcode?: string;
  retryAfterMs?: number;
  statusCode?: number;
}

function rateLimitDelayMs(error: unknown): number | null {
  const matrixError = error as MatrixErrorLike;
  if (matrixError.errcode !== "M_LIMIT_EXCEEDED" && matrixError.statusCode !== 429) return null;
  return Math.min(matrixError.retryAfterMs ?? DEFAULT_RATE_LIMIT_WAIT_MS, MAX_RATE_LIMIT_WAIT_MS);
}

/**
 * Waits out M_LIMIT_EXCEEDED with the delay the homeserver asks for. The
 * request is repeated as is; for sends that means the same transaction id,
 * so a request that did go through before the error is not posted twice.
 */
export async function retryRateLimited<T>(request: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request();
    } catch (error) {
      const delayMs = rateLimitDelayMs(error);
      if (delayMs === null || attempt >= MAX_RATE_LIMIT_RETRIES) throw error;
      await sleep(delayMs);
    }
  }
}

/** Our transaction id for an idempotency key: stable, URL-safe, bounded. */
export function transactionIdFor(idempotencyKey: string): string {
  return `sb.${createHash("sha256").update(idempotencyKey).digest("base64url").slice(0, 32)}`;
}

/** ChatGateway for one tenant's homeserver, through matrix-bot-sdk intents. */
export class MatrixGateway implements ChatGateway {
  readonly #appservice: Appservice;
  readonly #log: Logger;
  readonly #registered = new Set<string>();
  readonly #profiles = new Map<string, string>();

  constructor(appservice: Appservice, log: Logger) {
    this.#appservice = appservice;
    this.#log = log;
  }

  async send(
    sender: MatrixUserId,
    roomId: RoomId,
    message: OutgoingMessage,
    idempotencyKey: string,
  ): Promise<EventId> {
    return this.#putContent(sender, roomId, messageContent(message), idempotencyKey);
  }

  async edit(
    sender: MatrixUserId,
    roomId: RoomId,
    original: EventId,
    message: OutgoingMessage,
    idempotencyKey: string,
  ): Promise<EventId> {
    return this.#putContent(sender, roomId, editContent(original, message), idempotencyKey);
  }

  async setTyping(sender: MatrixUserId, roomId: RoomId, typing: boolean): Promise<void> {
    try {
      const client = await this.#client(sender);
      await client.setTyping(roomId, typing, TYPING_TIMEOUT_MS);
    } catch (error) {
      this.#log.debug({ err: error, roomId, userId: sender }, "typing notice failed");
    }
  }

  async join(user: MatrixUserId, roomId: RoomId): Promise<void> {
    const intent = await this.#intent(user);
    await retryRateLimited(() => intent.underlyingClient.joinRoom(roomId));
  }

  async leave(user: MatrixUserId, roomId: RoomId): Promise<void> {
    const intent = await this.#intent(user);
    await retryRateLimited(() => intent.underlyingClient.leaveRoom(roomId));
  }

  async ensureProfile(
    user: MatrixUserId,
    displayName: string,
    avatarUrl: string | null,
  ): Promise<void> {
    const wanted = JSON.stringify([displayName, avatarUrl]);
    if (this.#profiles.get(user) === wanted) return;
    const client = await this.#client(user);
    const current = (await client.getUserProfile(user).catch(() => ({}))) as {
      displayname?: string;
      avatar_url?: string;
    };
    if (current.displayname !== displayName)
      await retryRateLimited(() => client.setDisplayName(displayName));
    if (avatarUrl !== null && current.avatar_url !== avatarUrl)
      await retryRateLimited(() => client.setAvatarUrl(avatarUrl));
    this.#profiles.set(user, wanted);
  }

  async joinedMemberCount(asUser: MatrixUserId, roomId: RoomId): Promise<number> {
    const client = await this.#client(asUser);
    return (await client.getJoinedRoomMembers(roomId)).length;
  }

  async invite(inviter: MatrixUserId, roomId: RoomId, invitee: MatrixUserId): Promise<void> {
    const client = await this.#client(inviter);
    await retryRateLimited(() => client.inviteUser(invitee, roomId));
  }

  async redact(
    asUser: MatrixUserId,
    roomId: RoomId,
    eventId: EventId,
    reason: string,
  ): Promise<void> {
    const client = await this.#client(asUser);
    await retryRateLimited(() => client.redactEvent(roomId, eventId, reason));
  }

  async sendFile(
    sender: MatrixUserId,
    roomId: RoomId,
    file: OutgoingFile,
    idempotencyKey: string,
  ): Promise<EventId> {
    const client = await this.#client(sender);
    const url = await retryRateLimited(() =>
      client.uploadContent(file.content, file.mimetype, file.name),
    );
    const content: Record<string, unknown> = {
      msgtype: "m.file",
      body: file.name,
      filename: file.name,
      url,
      info: { mimetype: file.mimetype, size: file.content.length },
      "m.mentions": {},
    };
    if (file.threadRootId)
      content["m.relates_to"] = {
        rel_type: "m.thread",
        event_id: file.threadRootId,
        is_falling_back: true,
        "m.in_reply_to": { event_id: file.threadRootId },
      };
    return this.#putContent(sender, roomId, content, idempotencyKey);
  }

  async #putContent(
    sender: MatrixUserId,
    roomId: RoomId,
    content: Record<string, unknown>,
    idempotencyKey: string,
  ): Promise<EventId> {
    const client = await this.#client(sender);
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${transactionIdFor(idempotencyKey)}`;
    const response = (await retryRateLimited(() =>
      client.doRequest("PUT", path, null, content),
    )) as { event_id: string };
    return response.event_id as EventId;
  }

  async #intent(user: MatrixUserId): Promise<Intent> {
    const intent = this.#appservice.getIntentForUserId(user);
    if (!this.#registered.has(user)) {
      await intent.ensureRegistered();
      this.#registered.add(user);
    }
    return intent;
  }

  async #client(user: MatrixUserId): Promise<MatrixClient> {
    return (await this.#intent(user)).underlyingClient;
  }
}
