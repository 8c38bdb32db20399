import { z } from "zod";
import type { IncomingInvite, IncomingMessage, MembershipChange } from "../agents/ports.ts";
import { isMatrixUserId, type EventId, type MatrixUserId, type RoomId } from "../shared/ids.ts";
import type { RawEvent } from "./inbox.ts";

/**
 * Turns raw room events into the validated shapes the agents work with.
 * Anything malformed becomes `ignored` with a reason: a bad event is logged
 * and skipped, it never reaches a model and never stops the room's queue.
 */
export type ParsedEvent =
  | { readonly kind: "message"; readonly message: IncomingMessage }
  | { readonly kind: "invite"; readonly invite: IncomingInvite }
  | { readonly kind: "membership"; readonly change: MembershipChange }
  | { readonly kind: "ignored"; readonly reason: string };

const eventIdSchema = z.string().min(1).max(255);

const relatesToSchema = z
  .object({
    rel_type: z.string().max(255).optional(),
    event_id: eventIdSchema.optional(),
    "m.in_reply_to": z.object({ event_id: eventIdSchema }).partial().optional(),
  })
  .optional();

/** Longest msgtype or event type kept: they are quoted in reasons that get logged. */
const MAX_TYPE_CHARS = 255;

const messageContentSchema = z.object({
  msgtype: z.string().max(MAX_TYPE_CHARS),
  body: z.string(),
  format: z.string().optional(),
  formatted_body: z.string().optional(),
  "m.relates_to": relatesToSchema,
  "m.mentions": z.object({ user_ids: z.array(z.string()).max(1000).optional() }).optional(),
  "m.new_content": z.unknown().optional(),
});

const memberContentSchema = z.object({
  membership: z.enum(["invite", "join", "leave", "ban", "knock"]),
  is_direct: z.boolean().optional(),
});

const TEXT_MSGTYPES = new Set(["m.text", "m.emote", "m.notice"]);

/** Cuts text to `maxChars` without splitting a surrogate pair and drops lone surrogates. */
export function boundText(text: string, maxChars: number): string {
  const wellFormed = text.toWellFormed();
  if (wellFormed.length <= maxChars) return wellFormed;
  const cut = wellFormed.slice(0, maxChars);
  // A pair cut in half leaves a high surrogate at the end: drop it rather than show U+FFFD.
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

export function parseEvent(event: RawEvent, maxBodyChars: number): ParsedEvent {
  const roomId = event.room_id as RoomId;
  if (!isMatrixUserId(event.sender))
    return { kind: "ignored", reason: "sender is not a valid Matrix ID" };
  if (event.type === "m.room.member") return parseMember(event, roomId);
  if (event.type !== "m.room.message")
    return {
      kind: "ignored",
      reason: `event type ${event.type.slice(0, MAX_TYPE_CHARS)} is not handled`,
    };

  const content = messageContentSchema.safeParse(event.content);
  if (!content.success) return { kind: "ignored", reason: "message content is malformed" };
  const { msgtype, body } = content.data;
  if (!TEXT_MSGTYPES.has(msgtype))
    return { kind: "ignored", reason: `msgtype ${msgtype} is not handled` };
  const relation = content.data["m.relates_to"];
  if (relation?.rel_type === "m.replace")
    return { kind: "ignored", reason: "edits are not answered" };

  // A finite number can still lie outside the Date range (an Invalid Date throws when stored).
  const originServerTs =
    typeof event.origin_server_ts === "number" &&
    !Number.isNaN(new Date(event.origin_server_ts).getTime())
      ? event.origin_server_ts
      : Date.now();
  const mentions = content.data["m.mentions"];
  return {
    kind: "message",
    message: {
      eventId: event.event_id as EventId,
      roomId,
      sender: event.sender,
      msgtype: msgtype as IncomingMessage["msgtype"],
      // Only replies carry a fallback; a message that merely starts with a quote keeps it.
      body: boundText(
        relation?.["m.in_reply_to"]?.event_id !== undefined ? stripReplyFallback(body) : body,
        maxBodyChars,
      ),
      // The <mx-reply> fallback quotes the replied-to message, pills included: it must not address anyone.
      formattedBody:
        content.data.format === "org.matrix.custom.html" &&
        content.data.formatted_body !== undefined
          ? boundText(
              content.data.formatted_body.replace(/^\s*<mx-reply>[\s\S]*?<\/mx-reply>/, ""),
              maxBodyChars * 2,
            )
          : null,
      threadRootId:
        relation?.rel_type === "m.thread" && relation.event_id !== undefined
          ? (relation.event_id as EventId)
          : null,
      replyToEventId: (relation?.["m.in_reply_to"]?.event_id as EventId | undefined) ?? null,
      mentionedUserIds:
        mentions === undefined ? null : (mentions.user_ids ?? []).filter(isMatrixUserId),
      sentAt: new Date(originServerTs),
    },
  };
}

function parseMember(event: RawEvent, roomId: RoomId): ParsedEvent {
  const content = memberContentSchema.safeParse(event.content);
  const stateKey = event.state_key;
  if (!content.success || typeof stateKey !== "string" || !isMatrixUserId(stateKey)) {
    return { kind: "ignored", reason: "membership event is malformed" };
  }
  const userId = stateKey;
  if (content.data.membership === "invite") {
    return {
      kind: "invite",
      invite: {
        roomId,
        invitee: userId,
        inviter: event.sender as MatrixUserId,
        isDirect: content.data.is_direct === true,
      },
    };
  }
  return { kind: "membership", change: { roomId, userId, membership: content.data.membership } };
}

/** Removes the "> <@user> quoted text" fallback that replies carry in their body. */
function stripReplyFallback(body: string): string {
  if (!body.startsWith("> ")) return body;
  const lines = body.split("\n");
  let index = 0;
  while (index < lines.length && lines[index]?.startsWith(">")) index++;
  if (lines[index] === "") index++;
  return lines.slice(index).join("\n");
}
