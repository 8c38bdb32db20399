import type { Knex } from "knex";
import { withTenant } from "../db/tenant-transaction.ts";
import { forgetFacts, rememberFact } from "../memory/facts.ts";
import { parseMemoryIntent } from "../memory/intents.ts";
import type { ModelProvider, ToolCall } from "../models/types.ts";
import { describeError } from "../shared/errors.ts";
import type { PersonId, TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { extractFacts } from "./fact-extraction.ts";
import { parseMemoryToolCall } from "./memory-tools.ts";
import type { IncomingMessage } from "./ports.ts";
import type { Agent } from "./types.ts";

/**
 * What a turn writes to memory: explicit "remember/forget" requests before
 * the model runs, the model's memory tool calls, and optional extraction
 * after the answer. Facts about a person go to that person; an agent with
 * private memory keeps what it learns to itself.
 */

/** "remember that ..." / "forget ..." addressed to the agent are done before the model sees the message. */
export async function applyMemoryIntent(
  trx: Knex.Transaction,
  agent: Agent,
  personId: PersonId,
  message: IncomingMessage,
  request: string,
): Promise<void> {
  const intent = parseMemoryIntent(request);
  if (intent === null) return;
  if (intent.kind === "remember") {
    await rememberFact(trx, {
      agentId: agent.memoryScope === "private" ? agent.id : null,
      subject: { kind: "person", personId },
      key: intent.key,
      content: intent.content,
      source: "explicit",
      sourceEventId: message.eventId,
      sourceRoomId: message.roomId,
    });
  } else if (intent.kind === "forget") {
    await forgetFacts(trx, { agentId: agent.id, personId, matching: intent.matching });
  } else {
    await forgetFacts(trx, { agentId: agent.id, personId });
  }
}

/** Carries out one memory tool call of the model; the result is what the model is told. */
export async function runMemoryTool(
  db: Knex,
  tenantId: TenantId,
  personId: PersonId,
  agent: Agent,
  message: IncomingMessage,
  call: ToolCall,
): Promise<string> {
  const parsed = parseMemoryToolCall(call.name, call.arguments);
  if (parsed === null)
    return `error: ${call.name} is not a known tool or its arguments are incomplete`;
  const owner = agent.memoryScope === "private" ? agent.id : null;
  return withTenant(db, tenantId, async (trx) => {
    if (parsed.name === "forget") {
      const forgotten = await forgetFacts(trx, {
        agentId: agent.id,
        personId,
        matching: parsed.matching,
      });
      return `forgot ${forgotten} fact(s)`;
    }
    await rememberFact(trx, {
      agentId: owner,
      subject:
        parsed.about === "room"
          ? { kind: "room", roomId: message.roomId }
          : { kind: "person", personId },
      key: parsed.key,
      content: parsed.content,
      source: "tool",
      sourceEventId: message.eventId,
      sourceRoomId: message.roomId,
    });
    return "remembered";
  });
}

/** Best effort: a failed extraction is logged and costs the person nothing. */
export async function rememberExtractedFacts(
  db: Knex,
  tenantId: TenantId,
  personId: PersonId,
  agent: Agent,
  message: IncomingMessage,
  provider: ModelProvider,
  said: string,
  answered: string,
  log: Logger,
): Promise<void> {
  try {
    const facts = await extractFacts(provider, agent, said, answered);
    if (facts.length === 0) return;
    await withTenant(db, tenantId, async (trx) => {
      for (const fact of facts) {
        await rememberFact(trx, {
          agentId: agent.memoryScope === "private" ? agent.id : null,
          subject: { kind: "person", personId },
          key: fact.key,
          content: fact.content,
          source: "extraction",
          sourceEventId: message.eventId,
          sourceRoomId: message.roomId,
        });
      }
    });
  } catch (error) {
    log.warn({ err: describeError(error) }, "fact extraction failed");
  }
}
