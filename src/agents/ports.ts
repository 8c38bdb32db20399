import type { EventId, MatrixUserId, RoomId } from "../shared/ids.ts";

/**
 * What the agents need from the chat network, implemented by the Matrix
 * adapter (src/matrix). One instance serves one tenant's homeserver.
 */
export interface OutgoingMessage {
  readonly msgtype: "m.text" | "m.notice";
  /** Plain-text body (also the fallback for clients without HTML). */
  readonly body: string;
  /** Optional HTML rendering (org.matrix.custom.html). */
  readonly html?: string;
  /** Reply inside this thread. */
  readonly threadRootId?: EventId | null;
  /** Show as a reply to this event (outside threads, or as the in-thread reply fallback). */
  readonly replyTo?: EventId | null;
  /** Users this message intentionally mentions (m.mentions). */
  readonly mentions?: readonly MatrixUserId[];
}

export interface ChatGateway {
  /**
   * Sends a message as `sender` (an agent or the service bot). Calls with the
   * same `idempotencyKey` post at most one event while the homeserver keeps
   * its transaction cache; rate limits are waited out and retried. Resolves to
   * the event id.
   */
  send(
    sender: MatrixUserId,
    roomId: RoomId,
    message: OutgoingMessage,
    idempotencyKey: string,
  ): Promise<EventId>;
  /** Replaces the content of an earlier message of `sender` (m.replace). Same idempotency contract as send. */
  edit(
    sender: MatrixUserId,
    roomId: RoomId,
    original: EventId,
    message: OutgoingMessage,
    idempotencyKey: string,
  ): Promise<EventId>;
  /** Best effort: typing failures are logged, never thrown. */
  setTyping(sender: MatrixUserId, roomId: RoomId, typing: boolean): Promise<void>;
  /** Registers the user if needed and joins the room. */
  join(user: MatrixUserId, roomId: RoomId): Promise<void>;
  leave(user: MatrixUserId, roomId: RoomId): Promise<void>;
  /** Registers the user if needed and sets display name and avatar when they differ. */
  ensureProfile(user: MatrixUserId, displayName: string, avatarUrl: string | null): Promise<void>;
  /** Number of joined members of a room, as `asUser` sees it. */
  joinedMemberCount(asUser: MatrixUserId, roomId: RoomId): Promise<number>;
  /** `inviter` (who must be in the room with invite power) invites `invitee`. */
  invite(inviter: MatrixUserId, roomId: RoomId, invitee: MatrixUserId): Promise<void>;
  /** Removes an event's content (needs redact power unless it is `asUser`'s own event). */
  redact(asUser: MatrixUserId, roomId: RoomId, eventId: EventId, reason: string): Promise<void>;
  /** Uploads a file and posts it as an m.file message; same idempotency contract as send. */
  sendFile(
    sender: MatrixUserId,
    roomId: RoomId,
    file: OutgoingFile,
    idempotencyKey: string,
  ): Promise<EventId>;
}

export interface OutgoingFile {
  readonly name: string;
  readonly mimetype: string;
  readonly content: Buffer;
  readonly threadRootId?: EventId | null;
}

/** A text message someone sent in a room the tenant's agents are in, already validated. */
export interface IncomingMessage {
  readonly eventId: EventId;
  readonly roomId: RoomId;
  readonly sender: MatrixUserId;
  readonly msgtype: "m.text" | "m.emote" | "m.notice";
  /** Plain text, cut to the configured maximum. */
  readonly body: string;
  readonly formattedBody: string | null;
  /** The thread the message is in, if any. */
  readonly threadRootId: EventId | null;
  /** The event this message replies to, if any. */
  readonly replyToEventId: EventId | null;
  /** m.mentions.user_ids when the sender's client set m.mentions; null when it did not. */
  readonly mentionedUserIds: readonly MatrixUserId[] | null;
  readonly sentAt: Date;
}

export interface IncomingInvite {
  readonly roomId: RoomId;
  readonly invitee: MatrixUserId;
  readonly inviter: MatrixUserId;
  readonly isDirect: boolean;
}

export interface MembershipChange {
  readonly roomId: RoomId;
  readonly userId: MatrixUserId;
  readonly membership: "join" | "leave" | "ban" | "invite" | "knock";
}
