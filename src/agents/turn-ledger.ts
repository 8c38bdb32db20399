import type { Knex } from "knex";
import type { AgentId, EventId, RoomId, TenantId } from "../shared/ids.ts";
import type { TokenUsage } from "../models/types.ts";

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
    await trx("turns")
      .insert({
        tenant_id: tenantId,
        event_id: eventId,
        agent_id: agentId,
        room_id: roomId,
        status: "started",
      })
      .onConflict(["tenant_id", "event_id", "agent_id"])
      .ignore();
    const row = (await trx("turns")
      .where({ event_id: eventId, agent_id: agentId })
      .first()) as TurnRow;
    return { status: row.status, replyEventId: row.reply_event_id as EventId | null };
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
      usage?: TokenUsage;
    },
  ): Promise<void> {
    const usage = outcome.usage ?? { inputTokens: 0, outputTokens: 0 };
    await trx("turns")
      .where({ event_id: eventId, agent_id: agentId })
      .update({
        status: outcome.status,
        error: outcome.error ?? null,
        provider: outcome.provider ?? null,
        model: outcome.model ?? null,
        input_tokens: usage.inputTokens,
        output_tokens: usage.outputTokens,
        finished_at: trx.fn.now(),
      });
    if (outcome.status !== "answered") return;
    // Usage meters: one message and its tokens, on the tenant's day (UTC).
    await trx.raw(
      `insert into usage_daily (tenant_id, day, messages, input_tokens, output_tokens)
       values (?, (now() at time zone 'utc')::date, 1, ?, ?)
       on conflict (tenant_id, day) do update set
         messages = usage_daily.messages + 1,
         input_tokens = usage_daily.input_tokens + excluded.input_tokens,
         output_tokens = usage_daily.output_tokens + excluded.output_tokens`,
      [tenantId, usage.inputTokens, usage.outputTokens],
    );
  },
};
