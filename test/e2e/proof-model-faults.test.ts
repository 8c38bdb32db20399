import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  startFakeAnthropic,
  type FakeBehaviour,
  type FakeModelServer,
  type FakeReply,
} from "../support/fake-models.ts";
import { finalText, messageFrom } from "../support/matrix-user.ts";
import { startStack, TEST_MODEL_KEY, type StackTenant, type TestStack } from "../support/stack.ts";

/** Retries the SDK may make per model call: each message may cost the provider 1 + this many requests. */
const MAX_RETRIES = 1;
/** Short, so a hanging provider fails the turn quickly; the idle watchdog is capped by it. */
const MODEL_TIMEOUT_MS = 3_000;
const MESSAGES_PER_FAULT = 2;

interface Fault {
  readonly name: string;
  readonly behaviour: FakeBehaviour | FakeReply;
  /** What the notice in the room says (the ModelFailure message for the kind). */
  readonly notice: RegExp;
  /** The kind recorded on the failed turn. */
  readonly kind: string;
  /** Most requests per message: 1 + MAX_RETRIES where the SDK may retry (5xx, timeouts), else 1. */
  readonly requestsPerMessage: number;
}

const FAULTS: readonly Fault[] = [
  {
    name: "never answers (timeout)",
    behaviour: { kind: "hang" },
    notice: /did not answer in time/,
    kind: "timeout",
    requestsPerMessage: 1 + MAX_RETRIES,
  },
  {
    name: "answers 500",
    behaviour: { kind: "error", status: 500, message: "upstream exploded" },
    notice: /unavailable right now/,
    kind: "unavailable",
    requestsPerMessage: 1 + MAX_RETRIES,
  },
  {
    name: "streams malformed SSE",
    behaviour: { kind: "garbage" },
    notice: /incomplete or malformed answer/,
    kind: "bad_response",
    requestsPerMessage: 1,
  },
  {
    name: "streams JSON that is not a completion chunk",
    behaviour: { kind: "garbage", body: 'data: {"unexpected":true}\n\ndata: {"choices":7}\n\n' },
    notice: /incomplete or malformed answer/,
    kind: "bad_response",
    requestsPerMessage: 1,
  },
  {
    name: "ends the stream mid-way",
    behaviour: { text: "the start of an answer that", interrupt: { afterEvents: 3, then: "end" } },
    notice: /incomplete or malformed answer/,
    kind: "bad_response",
    requestsPerMessage: 1,
  },
  {
    name: "drops the connection mid-way",
    behaviour: {
      text: "the start of an answer that",
      interrupt: { afterEvents: 3, then: "disconnect" },
    },
    notice: /incomplete or malformed answer|unavailable right now/,
    kind: "(bad_response|unavailable)",
    requestsPerMessage: 1,
  },
  {
    name: "goes silent mid-way",
    behaviour: {
      text: "the start of an answer that",
      interrupt: { afterEvents: 3, then: "stall" },
    },
    notice: /did not answer in time/,
    kind: "timeout",
    requestsPerMessage: 1,
  },
];

/** One agent per vendor, each on its own fake server speaking that vendor's wire protocol. */
const CASES = (["openai", "anthropic"] as const).flatMap((vendor) =>
  FAULTS.map((fault) => ({ vendor, ...fault })),
);

describe("model provider faults on a real Synapse", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let anthropic: FakeModelServer;
  const agentOf = { openai: "ada", anthropic: "cleo" } as const;

  beforeAll(async () => {
    anthropic = await startFakeAnthropic({ apiKeys: [TEST_MODEL_KEY] });
    stack = await startStack({
      config: {
        models: {
          maxRetries: MAX_RETRIES,
          timeoutMs: MODEL_TIMEOUT_MS,
          anthropic: { baseUrl: anthropic.url, apiKey: TEST_MODEL_KEY },
        },
      },
    });
    acme = await stack.addTenant("acme");
    await acme.createAgent({ name: "ada" });
    await acme.createAgent({ name: "cleo", provider: "anthropic" });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await anthropic?.close();
  });

  it.each(CASES)(
    "when the $vendor provider $name: a notice per message, the turn failed, no retry storm",
    async (fault) => {
      const agent = acme.agentUserId(agentOf[fault.vendor]);
      const model = fault.vendor === "openai" ? stack.model : anthropic;
      const person = await acme.user(`${fault.vendor}-${fault.name.replace(/\W+/g, "-")}`);
      const roomId = await person.openDm(agent);
      model.reset();
      model.respondWith(() => fault.behaviour);

      const sent: string[] = [];
      for (let n = 0; n < MESSAGES_PER_FAULT; n++) {
        sent.push(await person.sendText(roomId, `question ${String(n)}`));
        // One at a time, so each message's requests are its own.
        await person.waitForEvents(roomId, messageFrom(agent), n + 1, 60_000);
      }
      const timeline = person.timeline.get(roomId) ?? [];
      const replies = timeline.filter(messageFrom(agent));
      expect(replies).toHaveLength(MESSAGES_PER_FAULT);
      for (const reply of replies) expect(finalText(timeline, reply)).toMatch(fault.notice);

      // The ledger is written just after the notice is posted.
      const turns = async (): Promise<{ status: string; error: string | null }[]> =>
        (await stack.database
          .knex("turns")
          .whereIn("event_id", sent)
          .select("status", "error")) as {
          status: string;
          error: string | null;
        }[];
      await expect
        .poll(async () => (await turns()).map((turn) => turn.status))
        .toEqual(sent.map(() => "failed"));
      for (const turn of await turns()) expect(turn.error).toMatch(new RegExp(`^${fault.kind}: `));
      // The failed turns are handled, not left for the event pipeline to retry.
      await expect
        .poll(async () =>
          (
            (await stack.database
              .knex("inbound_events")
              .whereIn("event_id", sent)
              .select("status")) as { status: string }[]
          ).map((event) => event.status),
        )
        .toEqual(sent.map(() => "done"));
      // The SDK's retries and nothing more: no retry of the turn, nothing after the notice.
      const requests = model.requests.length;
      expect(requests).toBeGreaterThanOrEqual(MESSAGES_PER_FAULT);
      expect(requests).toBeLessThanOrEqual(MESSAGES_PER_FAULT * fault.requestsPerMessage);

      // The provider is fine again: so is the agent, in the same room.
      model.respondWith((request) => ({ text: `echo: ${request.lastUserText}` }));
      await person.sendText(roomId, "are you back?");
      const back = await person.waitForEvents(roomId, messageFrom(agent), MESSAGES_PER_FAULT + 1);
      const all = person.timeline.get(roomId) ?? [];
      // The unanswered questions stay in the history, so the echo carries them too.
      expect(finalText(all, back[MESSAGES_PER_FAULT]!)).toMatch(/^echo: [^]*are you back\?$/);
      expect(model.requests).toHaveLength(requests + 1);
    },
    120_000,
  );
});
