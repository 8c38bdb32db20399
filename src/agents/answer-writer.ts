import type { Knex } from "knex";
import type { BridgeNetwork } from "../bridges/networks.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { recordMessage } from "../memory/history.ts";
import type { EventId } from "../shared/ids.ts";
import { AnswerStream, type AnswerWriter } from "./answer-stream.ts";
import { BridgedAnswer } from "./bridged-delivery.ts";
import type { IncomingMessage } from "./ports.ts";
import type { TurnContext, TurnDependencies } from "./turn.ts";
import { turnLedger } from "./turn-ledger.ts";
import type { AgentIdentity } from "./types.ts";

/**
 * Where the answer goes: streamed as edits in a Matrix room, sent whole in
 * a bridged one (see bridged-delivery.ts). Either way the first event is
 * recorded in the ledger before anything else is sent, so a retried turn
 * continues it rather than posting another.
 */
export function answerWriter(
  deps: TurnDependencies,
  context: TurnContext,
  identity: AgentIdentity,
  message: IncomingMessage,
  network: BridgeNetwork | null,
  existingEventId: EventId | null,
  /** The turn was started by an earlier run (the ledger's `fresh` was false). */
  resumed: boolean,
): AnswerWriter {
  const { tenantId, chat, isDirect } = context;
  const { agent, userId: sender } = identity;
  const idempotencyKey = `${message.eventId}/${agent.id}`;
  const setReplyEvent = (trx: Knex.Transaction, eventId: EventId) =>
    turnLedger.setReplyEvent(trx, message.eventId, agent.id, eventId);
  if (network === null)
    return new AnswerStream({
      chat,
      sender,
      roomId: message.roomId,
      threadRootId: message.threadRootId,
      replyTo: isDirect && message.threadRootId === null ? null : message.eventId,
      idempotencyKey,
      existingEventId,
      mayHavePosted: resumed && existingEventId === null,
      editThrottleMs: deps.editThrottleMs,
      render: deps.render,
      onPosted: (eventId) => withTenant(deps.db, tenantId, (trx) => setReplyEvent(trx, eventId)),
    });
  return new BridgedAnswer({
    chat,
    sender,
    roomId: message.roomId,
    network,
    answering: message,
    isDirect,
    idempotencyKey,
    existingEventId,
    render: deps.render,
    onPosted: (eventId, answer) =>
      withTenant(deps.db, tenantId, async (trx) => {
        await setReplyEvent(trx, eventId);
        if (answer !== null)
          await recordMessage(trx, {
            eventId,
            roomId: message.roomId,
            threadRootId: message.threadRootId,
            sender,
            personId: null,
            agentId: agent.id,
            platform: "matrix",
            body: answer,
            sentAt: new Date(),
          });
      }),
  });
}
