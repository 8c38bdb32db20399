import type { Knex } from "knex";
import type { Config } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { recordMessage, recentHistory } from "../memory/history.ts";
import { retrieveFacts } from "../memory/retrieval.ts";
import type { Platform } from "../memory/types.ts";
import { isModelFailure } from "../models/failure.ts";
import type {
  ChatMessage,
  ModelCredentials,
  ModelProvider,
  TokenUsage,
  ToolCall,
} from "../models/types.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { describeError } from "../shared/errors.ts";
import type { PersonId, TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { Entitlements, TenantPlan } from "../tenants/entitlements.ts";
import type { AnswerWriter } from "./answer-stream.ts";
import { answerWriter } from "./answer-writer.ts";
import { bridgedNetworkOf, recordedAnswer } from "./bridged-delivery.ts";
import { resolveCredentials, type CredentialsResult } from "./credentials.ts";
import { limitNotices, messageLimitNotice, postLimitNotice } from "./limit-notices.ts";
import { MEMORY_TOOLS } from "./memory-tools.ts";
import { applyMemoryIntent, rememberExtractedFacts, runMemoryTool } from "./turn-memory.ts";
import type { ChatGateway, IncomingMessage } from "./ports.ts";
import { buildPrompt } from "./prompt.ts";
import { stripAddress } from "./routing.ts";
import { turnLedger } from "./turn-ledger.ts";
import type { Agent, AgentIdentity } from "./types.ts";

/** Token budgets of the prompt's parts (approximate, chars/4). */
const HISTORY_TOKEN_BUDGET = 3_000;
const HISTORY_MAX_MESSAGES = 50;
const MEMORY_TOKEN_BUDGET = 800;
const MEMORY_MAX_FACTS = 20;
/** Model round trips per turn when the model keeps calling tools. */
const MAX_TOOL_ROUNDS = 3;
/** Typing notices time out after 30 s; refresh well before. */
const TYPING_REFRESH_MS = 20_000;

export interface TurnDependencies {
  readonly db: Knex;
  readonly cipher: SecretCipher;
  readonly models: Config["models"];
  readonly editThrottleMs: number;
  /** Run the optional fact-extraction step after each answered turn. */
  readonly extractFacts: boolean;
  readonly createProvider: (agent: Agent, credentials: ModelCredentials) => ModelProvider;
  readonly render: (markdown: string) => string;
  readonly log: Logger;
  /** Told how each turn ended (metrics); must not throw. */
  readonly observe?: TurnObserver;
  /** The plan's daily messages, counted before each answer. */
  readonly entitlements: Entitlements;
  /** The portal's base URL, named in the notice of a suspended tenant. */
  readonly portalUrl?: string;
}

/** Outcome of one turn, for metrics: answered, or failed and why. */
export interface TurnOutcome {
  readonly provider: string;
  readonly outcome: "answered" | "failed";
  /** The failure kind (a ModelFailure kind, or "no_credentials"); absent when answered. */
  readonly failure?: string;
  /** From the model request to the end of the answer. */
  readonly seconds: number;
}

export type TurnObserver = (outcome: TurnOutcome) => void;

export interface TurnContext {
  readonly tenantId: TenantId;
  readonly chat: ChatGateway;
  readonly isDirect: boolean;
  /** The sender's person and platform (resolved when the message was recorded). */
  readonly personId: PersonId;
  readonly platform: Platform;
}

/**
 * One agent answering one message, exactly once (see turn-ledger.ts):
 * explicit memory requests, context (history + retrieved facts), the model
 * streamed into the room (in a bridged room, sent whole once it is known:
 * bridged-delivery.ts), memory tool calls, then history, ledger and usage
 * written back. A model failure ends the turn with a notice in the room and
 * is not retried; a homeserver or database failure propagates so that the
 * event is retried, and the retry resumes the same reply (in a bridged
 * room, delivers the rest of the recorded answer without the model).
 */
export async function runTurn(
  deps: TurnDependencies,
  context: TurnContext,
  identity: AgentIdentity,
  message: IncomingMessage,
): Promise<void> {
  const { agent, userId: agentUserId } = identity;
  const { tenantId, chat } = context;
  const log = deps.log.child({
    tenantId,
    agentId: agent.id,
    eventId: message.eventId,
    roomId: message.roomId,
  });
  const request = stripAddress(message.body, identity);
  // One transaction: claim the turn in the ledger and gather its context.
  const prepared = await withTenant(deps.db, tenantId, async (trx) => {
    const ledger = await turnLedger.begin(trx, tenantId, message.eventId, agent.id, message.roomId);
    if (ledger.status !== "started") return { ledger, context: null };
    const network = await bridgedNetworkOf(trx, tenantId, message.roomId, context.platform);
    // An interrupted bridged delivery recorded its whole answer: the rest of it goes out, not a new one.
    if (network !== null && ledger.replyEventId !== null) {
      const answer = await recordedAnswer(trx, ledger.replyEventId);
      if (answer !== undefined) return { ledger, context: null, resume: { network, answer } };
    }
    // Counted now, in the ledger's transaction, so concurrent turns cannot overshoot the plan.
    let plan: TenantPlan | undefined;
    if (ledger.fresh) {
      const allowance = await deps.entitlements.reserveMessage(trx, tenantId);
      plan = allowance.plan;
      if (!allowance.allowed) {
        await turnLedger.refuse(trx, message.eventId, agent.id, "daily message limit reached");
        const day = await limitNotices.claim(trx, tenantId, message.roomId, "messages");
        return { ledger, context: null, limited: { allowance, day } };
      }
    }
    await applyMemoryIntent(trx, agent, context.personId, message, request);
    const managedRefusal =
      agent.keySource === "managed"
        ? await deps.entitlements.managedKeyRefusal(
            trx,
            tenantId,
            plan ?? (await deps.entitlements.planIn(trx, tenantId)),
          )
        : null;
    const credentials: CredentialsResult =
      managedRefusal === null
        ? await resolveCredentials(trx, agent, deps.models, deps.cipher)
        : { ok: false, reason: managedRefusal };
    const window = await recentHistory(trx, {
      roomId: message.roomId,
      threadRootId: message.threadRootId,
      tokenBudget: HISTORY_TOKEN_BUDGET,
      maxMessages: HISTORY_MAX_MESSAGES,
    });
    // The message being answered was recorded already; it goes last, on its own.
    const history = window.filter((earlier) => earlier.eventId !== message.eventId);
    // What someone told an agent about themselves is shared with them again,
    // not with the colleague who happens to ask: facts about other people
    // stay out of the prompt. Facts about the room and the team are shared.
    const facts = await retrieveFacts(trx, {
      agentId: agent.id,
      personIds: [context.personId],
      onlyThesePeople: true,
      roomId: message.roomId,
      text: request,
      limit: MEMORY_MAX_FACTS,
      tokenBudget: MEMORY_TOKEN_BUDGET,
    });
    return { ledger, context: { credentials, history, facts, network } };
  });
  const { ledger } = prepared;
  if ("limited" in prepared) {
    const { allowance, day } = prepared.limited;
    log.info({ used: allowance.used, limit: allowance.limit }, "daily message limit reached");
    if (day !== null)
      await postLimitNotice(
        chat,
        {
          sender: agentUserId,
          roomId: message.roomId,
          threadRootId: message.threadRootId,
          kind: "messages",
          day,
          body: messageLimitNotice(allowance),
        },
        log,
      );
    return;
  }
  if ("resume" in prepared) {
    const { network, answer } = prepared.resume;
    const writer = answerWriter(
      deps,
      context,
      identity,
      message,
      network,
      ledger.replyEventId,
      true,
    );
    await writer.append(answer);
    await writer.finish();
    await withTenant(deps.db, tenantId, (trx) =>
      turnLedger.finish(trx, tenantId, message.eventId, agent.id, { status: "answered" }),
    );
    log.info({ network }, "resumed an interrupted bridged answer");
    return;
  }
  if (prepared.context === null) {
    log.debug({ status: ledger.status }, "turn already finished; not answering again");
    return;
  }
  const { credentials, history, facts, network } = prepared.context;
  // A reply posted by a streamed run (the room was bridged since) is not a first part to keep.
  const stream = answerWriter(
    deps,
    context,
    identity,
    message,
    network,
    network === null ? ledger.replyEventId : null,
    !ledger.fresh,
  );

  if (!credentials.ok) {
    await stream.fail(credentials.reason);
    await withTenant(deps.db, tenantId, (trx) =>
      turnLedger.finish(trx, tenantId, message.eventId, agent.id, {
        status: "failed",
        error: "no model credentials",
      }),
    );
    log.warn("agent has no model credentials; told the room");
    deps.observe?.({
      provider: agent.provider,
      outcome: "failed",
      failure: "no_credentials",
      seconds: 0,
    });
    return;
  }

  const prompt = buildPrompt({
    agent,
    agentUserId,
    isDirect: context.isDirect,
    history,
    facts,
    current: {
      sender: message.sender,
      platform: context.platform,
      body: request === "" ? message.body : request,
    },
    now: new Date(),
  });
  const provider = deps.createProvider(agent, credentials.credentials);
  // Best effort and off the critical path: the model call does not wait for it.
  const typingOn = chat.setTyping(agentUserId, message.roomId, true);
  const typingRefresh = setInterval(
    () => void chat.setTyping(agentUserId, message.roomId, true),
    TYPING_REFRESH_MS,
  );
  const startedAt = performance.now();
  const elapsedSeconds = (): number => (performance.now() - startedAt) / 1000;
  try {
    const usage = await streamAnswer(deps, context, identity, message, provider, prompt, stream);
    const replyEventId = await stream.finish();
    await withTenant(deps.db, tenantId, async (trx) => {
      await recordMessage(trx, {
        eventId: replyEventId,
        roomId: message.roomId,
        threadRootId: message.threadRootId,
        sender: agentUserId,
        personId: null,
        agentId: agent.id,
        platform: "matrix",
        body: stream.text,
        sentAt: new Date(),
      });
      await turnLedger.finish(trx, tenantId, message.eventId, agent.id, {
        status: "answered",
        provider: agent.provider,
        model: agent.model,
        keySource: agent.keySource,
        usage,
      });
    });
    deps.observe?.({ provider: agent.provider, outcome: "answered", seconds: elapsedSeconds() });
    if (deps.extractFacts)
      await rememberExtractedFacts(
        deps.db,
        tenantId,
        context.personId,
        agent,
        message,
        provider,
        request,
        stream.text,
        log,
      );
  } catch (error) {
    if (!isModelFailure(error)) throw error;
    log.warn({ kind: error.kind, err: describeError(error) }, "model call failed");
    deps.observe?.({
      provider: agent.provider,
      outcome: "failed",
      failure: error.kind,
      seconds: elapsedSeconds(),
    });
    await stream.fail(error.message);
    await withTenant(deps.db, tenantId, (trx) =>
      turnLedger.finish(trx, tenantId, message.eventId, agent.id, {
        status: "failed",
        error: `${error.kind}: ${error.message}`,
        provider: agent.provider,
        model: agent.model,
        keySource: agent.keySource,
      }),
    );
  } finally {
    clearInterval(typingRefresh);
    // Never let "stopped typing" overtake "typing".
    await typingOn;
    await chat.setTyping(agentUserId, message.roomId, false);
  }
}

/** Runs the model, feeding memory tool results back, until it answers without tools. */
async function streamAnswer(
  deps: TurnDependencies,
  context: TurnContext,
  identity: AgentIdentity,
  message: IncomingMessage,
  provider: ModelProvider,
  prompt: { system: string; messages: ChatMessage[] },
  stream: AnswerWriter,
): Promise<TokenUsage> {
  const { agent } = identity;
  const messages = [...prompt.messages];
  let inputTokens = 0;
  let outputTokens = 0;
  for (let round = 0; round < MAX_TOOL_ROUNDS; round++) {
    const calls: ToolCall[] = [];
    let text = "";
    for await (const event of provider.stream({
      model: agent.model,
      system: prompt.system,
      messages,
      // Always offered: Anthropic refuses a conversation holding tool calls without tool definitions.
      tools: MEMORY_TOOLS,
      temperature: agent.temperature,
      maxTokens: agent.maxTokens,
    })) {
      if (event.type === "text") {
        text += event.delta;
        // Not awaited: the room is updated in the background while the model streams on.
        void stream.append(event.delta);
      } else if (event.type === "tool_call") {
        calls.push(event.call);
      } else {
        inputTokens += event.usage.inputTokens;
        outputTokens += event.usage.outputTokens;
      }
    }
    // Tool calls in the last round are not run: the model has had its chances.
    if (calls.length === 0 || round === MAX_TOOL_ROUNDS - 1) break;
    messages.push({ role: "assistant", content: text, toolCalls: calls });
    for (const call of calls) {
      messages.push({
        role: "tool",
        toolCallId: call.id,
        content: await runMemoryTool(
          deps.db,
          context.tenantId,
          context.personId,
          agent,
          message,
          call,
        ),
      });
    }
  }
  return { inputTokens, outputTokens };
}
