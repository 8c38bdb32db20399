import type { Knex } from "knex";
import { bridgeStore } from "../bridges/repository.ts";
import { NETWORKS, type BridgeNetwork } from "../bridges/networks.ts";
import type { Platform } from "../memory/types.ts";
import type { EventId, MatrixUserId, RoomId, TenantId } from "../shared/ids.ts";
import type { AnswerWriter } from "./answer-stream.ts";
import { splitMessage } from "./message-parts.ts";
import type { ChatGateway, OutgoingMessage } from "./ports.ts";

/**
 * How agents answer in rooms bridged to Slack, Discord or Telegram. Each
 * Matrix edit would become an edit on the remote side (rate-limited and
 * noisy), so the answer is not streamed: it is sent once it is complete,
 * split into messages within the network's limit, with the person
 * mentioned in a way the bridge turns into a native mention, and threads
 * kept only where the network has them.
 */

/**
 * The network a room is bridged to: the relay's record of its portals, else
 * the network whose ghost sent the message (a portal the relay has not
 * joined yet is still a portal). Null for a plain Matrix room.
 */
export async function bridgedNetworkOf(
  trx: Knex.Transaction,
  tenantId: TenantId,
  roomId: RoomId,
  senderPlatform: Platform,
): Promise<BridgeNetwork | null> {
  const room = await bridgeStore.findRoom(trx, tenantId, roomId);
  if (room !== undefined) return room.network;
  return senderPlatform === "matrix" ? null : senderPlatform;
}

/**
 * The whole answer an interrupted turn recorded with its first part (see
 * BridgedAnswerOptions.onPosted), if any. History keeps at most
 * MAX_MESSAGE_BODY_CHARS of it: beyond that, the last parts of a resumed
 * delivery can differ from the interrupted one's.
 */
export async function recordedAnswer(
  trx: Knex.Transaction,
  firstPartId: EventId,
): Promise<string | undefined> {
  const row = (await trx("messages").where({ event_id: firstPartId }).first("body")) as
    { body: string } | undefined;
  return row?.body;
}

/** The person's message an answer is for, and where it was said. */
export interface AnsweredMessage {
  readonly eventId: EventId;
  readonly sender: MatrixUserId;
  readonly threadRootId: EventId | null;
}

export interface BridgedTarget {
  readonly network: BridgeNetwork;
  readonly answering: AnsweredMessage;
  /** A DM: nobody else to tell apart, so no mention and no reply quote. */
  readonly isDirect: boolean;
}

/** A Matrix pill (a matrix.to link): the bridges turn it into the network's own mention. */
function pillMarkdown(userId: MatrixUserId): string {
  return `[${userId.replace(/[\\[\]*_`~<>]/g, "\\$&")}](https://matrix.to/#/${userId})`;
}

/**
 * The messages carrying `text` to the network: parts within its limit
 * (mention included), the first one mentioning the person in a group and
 * replying to their message, every one in the thread when the network has
 * threads. Elsewhere a thread becomes a reply to the person's message.
 */
export function bridgedMessages(
  text: string,
  msgtype: OutgoingMessage["msgtype"],
  target: BridgedTarget,
  render: (markdown: string) => string,
): OutgoingMessage[] {
  const { answering, isDirect } = target;
  const threadRootId = NETWORKS[target.network].threads ? answering.threadRootId : null;
  const mention = isDirect ? null : pillMarkdown(answering.sender);
  // Reserved on every part: the limit is the network's, whatever the part's place.
  const reserve = mention === null ? 0 : mention.length + 2;
  const parts = splitMessage(text, NETWORKS[target.network].maxMessageChars - reserve);
  return parts.map((part, index): OutgoingMessage => {
    const first = index === 0;
    // A part opening with a block (code, list, heading) keeps it at the start of a line.
    const markdown =
      first && mention !== null
        ? /^[\p{L}\p{N}]/u.test(part)
          ? `${mention}: ${part}`
          : `${mention}\n\n${part}`
        : part;
    const body = first && mention !== null ? `${answering.sender}: ${part}` : part;
    const replyTo =
      first && (!isDirect || answering.threadRootId !== null) ? answering.eventId : null;
    return {
      msgtype,
      body,
      html: render(markdown),
      threadRootId,
      replyTo,
      mentions: first && mention !== null ? [answering.sender] : [],
    };
  });
}

export interface BridgedAnswerOptions extends BridgedTarget {
  readonly chat: ChatGateway;
  readonly sender: MatrixUserId;
  readonly roomId: RoomId;
  readonly render: (markdown: string) => string;
  /** Base of the parts' idempotency keys: the same answer gets the same keys part by part. */
  readonly idempotencyKey: string;
  /**
   * The first part, posted by an earlier, interrupted run that delivered
   * this same text: it is not posted again.
   */
  readonly existingEventId: EventId | null;
  /**
   * Called once the first part is posted, before any other, with the whole
   * answer being delivered (null when it is a failure notice): recording
   * both lets a resumed turn deliver the same parts again under the same
   * keys instead of a new answer.
   */
  readonly onPosted: (eventId: EventId, answer: string | null) => Promise<void>;
}

/**
 * Gathers the model's answer and sends it whole (see the module comment).
 * Parts go out in order under keys `<key>/part/<n>`, so a resumed delivery
 * of the same text posts each part at most once while the homeserver keeps
 * its transaction cache (the ChatGateway contract).
 */
export class BridgedAnswer implements AnswerWriter {
  readonly #options: BridgedAnswerOptions;
  #text = "";

  constructor(options: BridgedAnswerOptions) {
    this.#options = options;
  }

  get text(): string {
    return this.#text;
  }

  append(delta: string): Promise<void> {
    this.#text += delta;
    return Promise.resolve();
  }

  finish(): Promise<EventId> {
    const text = this.#text.trim() === "" ? "(no answer)" : this.#text;
    return this.#deliver(text, "m.text", text);
  }

  fail(notice: string): Promise<EventId> {
    const empty = this.#text.trim() === "";
    const text = empty ? `⚠️ ${notice}` : `${this.#text}\n\n⚠️ ${notice}`;
    return this.#deliver(text, empty ? "m.notice" : "m.text", null);
  }

  async #deliver(
    text: string,
    msgtype: OutgoingMessage["msgtype"],
    answer: string | null,
  ): Promise<EventId> {
    const { chat, sender, roomId, idempotencyKey, render } = this.#options;
    const messages = bridgedMessages(text, msgtype, this.#options, render);
    let first = this.#options.existingEventId;
    for (const [index, message] of messages.entries()) {
      if (index === 0 && first !== null) continue;
      const eventId = await chat.send(sender, roomId, message, `${idempotencyKey}/part/${index}`);
      if (index === 0) {
        first = eventId;
        await this.#options.onPosted(eventId, answer);
      }
    }
    if (first === null) throw new Error("a bridged answer has at least one part");
    return first;
  }
}
