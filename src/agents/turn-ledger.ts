import type { Knex } from "knex";
import type { AgentId, EventId, RoomId, TenantId } from "../shared/ids.ts";
import type { TokenUsage } from "../models/types.ts";
import type { KeySource } from "./types.ts";

/**
 * The exactly-once ledger: one row per (triggering event, agent). A turn that
 * is `answered` or `failed` is never run again; a `started` turn found after a
 * crash is resumed, editing the reply it already posted (reply_event_id)
 * instead of posting a second one.
 */
export type TurnStatus = "started" | "answered" | "failed";

export interface TurnRecord {
  readonly status: TurnStatus;
  readonly replyEventId: EventId | null;
  /** True when this call started the turn (false: resumed or already finished). */
  readonly fresh: boolean;
}

interface TurnRow {
  status: TurnStatus;
  reply_event_id: string | null;
}

export const turnLedger = {
  /** Starts the turn, or returns the existing record when it was started before. */
  async begin(
    trx: Knex.Transaction,
    tenantId: TenantId,
    eventId: EventId,
    agentId: AgentId,
    roomId: RoomId,
  ): Promise<TurnRecord> {
    const inserted = (await trx("turns")
      .insert({
        tenant_id: tenantId,
        event_id: eventId,
        agent_id: agentId,
        room_id: roomId,
        status: "started",
      })
      .onConflict(["tenant_id", "event_id", "agent_id"])
      .ignore()
      .returning("status")) as unknown[];
    const row = (await trx("turns")
      .where({ event_id: eventId, agent_id: agentId })
      .first()) as TurnRow;
    return {
      status: row.status,
      replyEventId: row.reply_event_id as EventId | null,
      fresh: inserted.length > 0,
    };
  },

  /**
   * Ends a fresh turn without running it (the tenant's plan refused it):
   * `failed` with the reason, so a retry of the event does not run it either.
   * Nothing was counted for it, so nothing is given back.
   */
  async refuse(
    trx: Knex.Transaction,
    eventId: EventId,
    agentId: AgentId,
    reason: string,
  ): Promise<void> {
    await trx("turns")
      .where({ event_id: eventId, agent_id: agentId })
      .update({ status: "failed", error: reason, finished_at: trx.fn.now() });
  },

  async setReplyEvent(
    trx: Knex.Transaction,
    eventId: EventId,
    agentId: AgentId,
    replyEventId: EventId,
  ): Promise<void> {
    await trx("turns")
      .where({ event_id: eventId, agent_id: agentId })
      .update({ reply_event_id: replyEventId });
  },

  async finish(
    trx: Knex.Transaction,
    tenantId: TenantId,
    eventId: EventId,
    agentId: AgentId,
    outcome: {
      status: "answered" | "failed";
      error?: string;
      provider?: string;
      model?: string;
      /** Whose key paid for the model call, when one was made. */
      keySource?: KeySource;
      usage?: TokenUsage;
    },
  ): Promise<void> {
    const usage = outcome.usage ?? { inputTokens: 0, outputTokens: 0 };
    const managedTokens =
      outcome.keySource === "managed" ? usage.inputTokens + usage.outputTokens : 0;
    await trx("turns")
      .where({ event_id: eventId, agent_id: agentId })
      .update({
        status: outcome.status,
        error: outcome.error ?? null,
        provider: outcome.provider ?? null,
        model: outcome.model ?? null,
        key_source: outcome.keySource ?? null,
        input_tokens: usage.inputTokens,
        output_tokens: usage.outputTokens,
        finished_at: trx.fn.now(),
      });
    // The message was counted when the turn began (Entitlements.reserveMessage,
    // so concurrent turns cannot pass the daily limit), on the day it began.
    // An answered turn adds its tokens there; a failed one gives the message
    // back, so usage_daily.messages counts answered turns.
    const startedDay = trx.raw(
      "(select (started_at at time zone 'utc')::date from turns where tenant_id = ? and event_id = ? and agent_id = ?)",
      [tenantId, eventId, agentId],
    );
    if (outcome.status === "answered") {
      await trx.raw(
        `insert into usage_daily (tenant_id, day, messages, input_tokens, output_tokens, managed_tokens)
         values (?, ?, 0, ?, ?, ?)
         on conflict (tenant_id, day) do update set
           input_tokens = usage_daily.input_tokens + excluded.input_tokens,
           output_tokens = usage_daily.output_tokens + excluded.output_tokens,
           managed_tokens = usage_daily.managed_tokens + excluded.managed_tokens`,
        [tenantId, startedDay, usage.inputTokens, usage.outputTokens, managedTokens],
      );
    } else {
      await trx("usage_daily")
        .where({ tenant_id: tenantId })
        .where("day", startedDay)
        .update({ messages: trx.raw("greatest(messages - 1, 0)") });
    }
  },
};
