import type { Knex } from "knex";
import { badRequest } from "../shared/errors.ts";
import type { AgentId, EventId, MatrixUserId, PersonId, RoomId } from "../shared/ids.ts";
import { makeStorable } from "../shared/storable-text.ts";
import { CURRENT_TENANT_SQL } from "./facts.ts";
import { estimateTokens } from "./tokens.ts";
import type { HistoryMessage, Platform } from "./types.ts";

/**
 * The conversation history repository: every message the agents saw or
 * sent, per room and thread. Runs inside the caller's tenant transaction.
 */

/** Longest body kept, in characters; Matrix events are at most 64 KiB anyway. */
export const MAX_MESSAGE_BODY_CHARS = 16_000;
/** Tokens a message costs in a prompt beyond its body (sender, separators). */
export const HISTORY_MESSAGE_OVERHEAD_TOKENS = 4;

export interface NewMessage {
  readonly roomId: RoomId;
  /** The thread's root event when the message is in a thread; null on the main timeline. */
  readonly threadRootId: EventId | null;
  readonly eventId: EventId;
  readonly sender: MatrixUserId;
  readonly personId: PersonId | null;
  /** Set when one of our agents sent the message. */
  readonly agentId: AgentId | null;
  readonly platform: Platform;
  readonly body: string;
  readonly sentAt: Date;
}

/** A history message with its room, for exports that span rooms. */
export interface PersonHistoryMessage extends HistoryMessage {
  readonly roomId: RoomId;
}

interface MessageRow {
  room_id: string;
  thread_root_id: string | null;
  event_id: string;
  sender: string;
  person_id: string | null;
  agent_id: string | null;
  platform: Platform;
  body: string;
  sent_at: Date | string;
}

const MESSAGE_COLUMNS = [
  "room_id",
  "thread_root_id",
  "event_id",
  "sender",
  "person_id",
  "agent_id",
  "platform",
  "body",
  "sent_at",
] as const;

/**
 * Stores a message once: recording the same event id again (a retried
 * transaction, a replay) changes nothing. Returns true when it was stored now.
 */
export async function recordMessage(trx: Knex.Transaction, message: NewMessage): Promise<boolean> {
  if (Number.isNaN(message.sentAt.getTime())) throw badRequest("message has an invalid time");
  const inserted = await trx("messages")
    .insert({
      tenant_id: trx.raw(CURRENT_TENANT_SQL),
      room_id: message.roomId,
      thread_root_id: message.threadRootId,
      event_id: message.eventId,
      sender: message.sender,
      person_id: message.personId,
      agent_id: message.agentId,
      platform: message.platform,
      body: Array.from(makeStorable(message.body)).slice(0, MAX_MESSAGE_BODY_CHARS).join(""),
      sent_at: message.sentAt,
    })
    .onConflict(["tenant_id", "event_id"])
    .ignore()
    .returning("id");
  return inserted.length > 0;
}

export interface HistoryWindow {
  readonly roomId: RoomId;
  /** A thread's root event: that thread (root included); null: the main timeline, threads excluded. */
  readonly threadRootId: EventId | null;
  /** Approximate tokens the returned messages may cost (see HISTORY_MESSAGE_OVERHEAD_TOKENS). */
  readonly tokenBudget: number;
  readonly maxMessages: number;
}

/**
 * The latest messages of a room's main timeline or of one thread, oldest
 * first. When the budget cuts, the newest messages are kept and the window
 * has no gaps. A thread's root is kept ahead of the others when it fits,
 * because it says what the thread is about.
 */
export async function recentHistory(
  trx: Knex.Transaction,
  window: HistoryWindow,
): Promise<HistoryMessage[]> {
  const maxMessages = Math.floor(window.maxMessages);
  if (maxMessages <= 0 || window.tokenBudget <= 0) return [];
  let budget = window.tokenBudget;
  let root: MessageRow | undefined;
  const query = trx("messages")
    .select<MessageRow[]>(MESSAGE_COLUMNS)
    .where("room_id", window.roomId);
  if (window.threadRootId === null) {
    query.whereNull("thread_root_id");
  } else {
    query.where("thread_root_id", window.threadRootId);
    root = await trx("messages")
      .first<MessageRow | undefined>(MESSAGE_COLUMNS)
      .where({ room_id: window.roomId, event_id: window.threadRootId });
    if (root !== undefined && costOf(root) <= budget) budget -= costOf(root);
    else root = undefined;
  }
  const newestFirst = await query
    .orderBy([
      { column: "sent_at", order: "desc" },
      { column: "id", order: "desc" },
    ])
    .limit(root === undefined ? maxMessages : maxMessages - 1);

  const kept: MessageRow[] = [];
  for (const row of newestFirst) {
    const cost = costOf(row);
    if (cost > budget) break;
    budget -= cost;
    kept.push(row);
  }
  if (root !== undefined) kept.push(root);
  return kept.reverse().map(historyFromRow);
}

/** Every message the person sent (or that was recorded for them), oldest first, for export. */
export async function historyOfPerson(
  trx: Knex.Transaction,
  personId: PersonId,
): Promise<PersonHistoryMessage[]> {
  const rows = await trx("messages")
    .select<MessageRow[]>(MESSAGE_COLUMNS)
    .where("person_id", personId)
    .orderBy([
      { column: "sent_at", order: "asc" },
      { column: "id", order: "asc" },
    ]);
  return rows.map((row) => ({ ...historyFromRow(row), roomId: row.room_id as RoomId }));
}

/** Erasure (GDPR): deletes the person's messages. Returns the count. */
export async function deleteHistoryOfPerson(
  trx: Knex.Transaction,
  personId: PersonId,
): Promise<number> {
  // Counted through RETURNING: knex-pglite answers a plain delete with the raw result, not a count.
  const deleted = await trx("messages").where("person_id", personId).delete(["id"]);
  return deleted.length;
}

/** Points the messages of `from` at `to` (people being merged). Returns the count. */
export async function reassignHistoryOfPerson(
  trx: Knex.Transaction,
  from: PersonId,
  to: PersonId,
): Promise<number> {
  return trx("messages").where("person_id", from).update({ person_id: to });
}

/** Points one sender's messages, now attributed to `from`, at `to` (an identity split off). */
export async function reassignHistoryOfSender(
  trx: Knex.Transaction,
  sender: MatrixUserId,
  from: PersonId,
  to: PersonId,
): Promise<number> {
  return trx("messages").where({ person_id: from, sender }).update({ person_id: to });
}

function costOf(row: MessageRow): number {
  return estimateTokens(row.body) + HISTORY_MESSAGE_OVERHEAD_TOKENS;
}

function historyFromRow(row: MessageRow): HistoryMessage {
  return {
    eventId: row.event_id as EventId,
    sender: row.sender as MatrixUserId,
    personId: row.person_id as PersonId | null,
    agentId: row.agent_id as AgentId | null,
    platform: row.platform,
    body: row.body,
    threadRootId: row.thread_root_id as EventId | null,
    sentAt: new Date(row.sent_at),
  };
}
