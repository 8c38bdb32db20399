import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bridgedMessages } from "../../src/agents/bridged-delivery.ts";
import type { ChatGateway, OutgoingMessage } from "../../src/agents/ports.ts";
import { agentRepository } from "../../src/agents/repository.ts";
import { runTurn, type TurnContext, type TurnDependencies } from "../../src/agents/turn.ts";
import type { AgentIdentity } from "../../src/agents/types.ts";
import { parseConfig } from "../../src/config/load.ts";
import { withTenant } from "../../src/db/tenant-transaction.ts";
import { markdownToHtml } from "../../src/matrix/formatting.ts";
import { platformOfUserId, resolvePerson } from "../../src/memory/people.ts";
import type { ModelProvider, ModelStreamEvent } from "../../src/models/types.ts";
import { SecretCipher } from "../../src/secrets/cipher.ts";
import type { EventId, MatrixUserId, RoomId, TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { Entitlements } from "../../src/tenants/entitlements.ts";
import { BACKENDS, createTestDatabase, type TestDatabase } from "../support/database.ts";
import { seedTenant } from "../support/seed.ts";

const SERVER = "acme.test";
const ROOM = `!portal:${SERVER}` as RoomId;
const GHOST = `@discord_123456:${SERVER}` as MatrixUserId;
const AGENT = `@ai_ada:${SERVER}` as MatrixUserId;

/** An answer three Discord messages long. */
const ANSWER = Array.from(
  { length: 6 },
  (_, n) => `Part of the answer number ${n}. ${"Words that fill the message. ".repeat(30)}`,
).join("\n\n");

interface Sent {
  readonly key: string;
  readonly message: OutgoingMessage;
}

/** Records sends; `failAt` (0-based) makes that send fail as an unreachable homeserver would. */
function recordingChat(failAt?: number): { chat: ChatGateway; sent: Sent[] } {
  const sent: Sent[] = [];
  let attempts = 0;
  const refuse = (): Promise<never> => Promise.reject(new Error("not used by a bridged turn"));
  const chat: ChatGateway = {
    send(_sender, _roomId, message, key) {
      if (attempts++ === failAt) return Promise.reject(new Error("homeserver unreachable"));
      sent.push({ key, message });
      return Promise.resolve(`$${key.replace(/\W/g, "-")}` as EventId);
    },
    edit: refuse,
    setTyping: () => Promise.resolve(),
    join: refuse,
    leave: refuse,
    ensureProfile: refuse,
    joinedMemberCount: refuse,
    invite: refuse,
    redact: refuse,
    sendFile: refuse,
  };
  return { chat, sent };
}

function modelSaying(text: string): ModelProvider {
  return {
    name: "openai",
    async *stream(): AsyncIterable<ModelStreamEvent> {
      for (const word of text.split(/(?<= )/)) {
        await Promise.resolve();
        yield { type: "text", delta: word };
      }
      yield { type: "done", usage: { inputTokens: 10, outputTokens: 20 }, stopReason: "end" };
    },
  };
}

/**
 * A turn in a Discord-bridged room whose delivery is interrupted after its
 * first part (the homeserver failed; the event is retried): the retry
 * delivers the rest of the same answer under the same keys, without asking
 * the model again, and a third run does nothing.
 */
describe.each(BACKENDS)("a bridged turn interrupted between parts (%s)", (kind) => {
  let database: TestDatabase;
  let tenantId: TenantId;
  let identity: AgentIdentity;
  let deps: Omit<TurnDependencies, "createProvider">;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const config = parseConfig(
      JSON.stringify({
        secrets: {
          masterKeys: { test: Buffer.alloc(32, 7).toString("base64") },
          activeKeyId: "test",
        },
        models: { openai: { apiKey: "sk-managed", defaultModel: "m" } },
        defaultPlan: "enterprise",
      }),
      {},
      "test config",
    );
    const seeded = await seedTenant(database.knex, "acme", ["ada"]);
    tenantId = seeded.tenantId;
    await database.knex("tenants").where({ id: tenantId }).update({ plan: "enterprise" });
    const agent = await withTenant(database.knex, tenantId, (trx) =>
      agentRepository.findByName(trx, "ada"),
    );
    if (agent === undefined) throw new Error("agent not seeded");
    identity = { agent, userId: AGENT };
    deps = {
      db: database.knex,
      cipher: new SecretCipher(config.secrets.masterKeys, "test"),
      models: config.models,
      editThrottleMs: 100,
      extractFacts: false,
      render: markdownToHtml,
      log: createLogger({ level: "fatal", pretty: false }),
      entitlements: new Entitlements(database.knex, config.plans, config.defaultPlan),
    };
  });

  afterAll(async () => {
    await database.drop();
  });

  it("finishes the same answer after a failure between parts, once", async () => {
    const personId = await withTenant(database.knex, tenantId, (trx) =>
      resolvePerson(trx, GHOST, platformOfUserId(GHOST)),
    );
    const context = (chat: ChatGateway): TurnContext => ({
      tenantId,
      chat,
      isDirect: false,
      personId,
      platform: "discord",
    });
    const message = {
      eventId: "$question" as EventId,
      roomId: ROOM,
      sender: GHOST,
      msgtype: "m.text" as const,
      body: "ada, explain everything",
      formattedBody: null,
      threadRootId: null,
      replyToEventId: null,
      mentionedUserIds: null,
      sentAt: new Date(),
    };
    const expected = bridgedMessages(
      ANSWER,
      "m.text",
      { network: "discord", answering: message, isDirect: false },
      markdownToHtml,
    );
    expect(expected.length).toBeGreaterThanOrEqual(3);

    const interrupted = recordingChat(1);
    await expect(
      runTurn(
        { ...deps, createProvider: () => modelSaying(ANSWER) },
        context(interrupted.chat),
        identity,
        message,
      ),
    ).rejects.toThrow("homeserver unreachable");
    expect(interrupted.sent.map((entry) => entry.message)).toEqual(expected.slice(0, 1));
    const firstPart = `$${interrupted.sent[0]?.key.replace(/\W/g, "-")}`;
    const afterCrash = await withTenant(database.knex, tenantId, async (trx) => ({
      turn: (await trx("turns").where({ event_id: message.eventId }).first()) as {
        status: string;
        reply_event_id: string;
      },
      recorded: (await trx("messages").where({ event_id: firstPart }).first()) as {
        body: string;
        agent_id: string;
      },
    }));
    expect(afterCrash.turn).toMatchObject({ status: "started", reply_event_id: firstPart });
    expect(afterCrash.recorded).toMatchObject({ body: ANSWER, agent_id: identity.agent.id });

    const noModel = (): ModelProvider => {
      throw new Error("the model must not be asked again");
    };
    const retry = recordingChat();
    await runTurn({ ...deps, createProvider: noModel }, context(retry.chat), identity, message);
    expect(retry.sent.map((entry) => entry.key)).toEqual(
      expected.slice(1).map((_, n) => `${message.eventId}/${identity.agent.id}/part/${n + 1}`),
    );
    expect(retry.sent.map((entry) => entry.message)).toEqual(expected.slice(1));
    const turn = (await withTenant(database.knex, tenantId, (trx) =>
      trx("turns").where({ event_id: message.eventId }).first(),
    )) as { status: string; reply_event_id: string };
    expect(turn).toMatchObject({ status: "answered", reply_event_id: firstPart });

    const again = recordingChat();
    await runTurn({ ...deps, createProvider: noModel }, context(again.chat), identity, message);
    expect(again.sent).toEqual([]);
  });
});
