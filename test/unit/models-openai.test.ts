import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  isModelFailure,
  type ModelFailure,
  type ModelFailureKind,
} from "../../src/models/failure.ts";
import { toOpenAIParams } from "../../src/models/openai.ts";
import { createModelProvider } from "../../src/models/provider.ts";
import type { ModelClientOptions, ModelRequest, ModelStreamEvent } from "../../src/models/types.ts";
import { echoResponder, type FakeModelServer, startFakeOpenAI } from "../support/fake-models.ts";

const KEY = "sk-test-openai-0123456789";
const OPTIONS: ModelClientOptions = { timeoutMs: 5_000, maxRetries: 2 };

let fake: FakeModelServer;

beforeAll(async () => {
  fake = await startFakeOpenAI({ apiKeys: [KEY] });
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  fake.reset();
  fake.respondWith(echoResponder);
  fake.chunkDelayMs = 0;
});

function request(overrides: Partial<ModelRequest> = {}): ModelRequest {
  return {
    model: "gpt-test",
    system: "You are Ada, a helpful agent.",
    messages: [{ role: "user", content: "Hello" }],
    temperature: 0.3,
    maxTokens: 256,
    ...overrides,
  };
}

function provider(options: Partial<ModelClientOptions> = {}, apiKey = KEY) {
  return createModelProvider("openai", { apiKey, baseUrl: fake.url }, { ...OPTIONS, ...options });
}

async function collect(stream: AsyncIterable<ModelStreamEvent>): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

/** Runs the stream to its failure; returns it with the events seen before. */
async function failure(
  stream: AsyncIterable<ModelStreamEvent>,
): Promise<{ error: ModelFailure; events: ModelStreamEvent[] }> {
  const events: ModelStreamEvent[] = [];
  try {
    for await (const event of stream) events.push(event);
  } catch (error) {
    if (isModelFailure(error)) return { error, events };
    throw error;
  }
  throw new Error(`stream ended without failing: ${JSON.stringify(events)}`);
}

const textOf = (events: ModelStreamEvent[]): string =>
  events.map((event) => (event.type === "text" ? event.delta : "")).join("");

async function expectKind(
  stream: AsyncIterable<ModelStreamEvent>,
  kind: ModelFailureKind,
): Promise<ModelFailure> {
  const { error } = await failure(stream);
  expect(error.kind).toBe(kind);
  expect(error.message).toContain("openai");
  expect(error.message).not.toContain(KEY);
  return error;
}

describe("OpenAI provider", () => {
  it("streams text deltas in order, then done with the server's usage", async () => {
    fake.enqueue({
      kind: "reply",
      text: "The quick brown fox jumps",
      chunks: 4,
      usage: { inputTokens: 21, outputTokens: 7 },
    });
    const events = await collect(provider().stream(request()));
    expect(events.filter((e) => e.type === "text")).toHaveLength(4);
    expect(textOf(events)).toBe("The quick brown fox jumps");
    expect(events.at(-1)).toEqual({
      type: "done",
      usage: { inputTokens: 21, outputTokens: 7 },
      stopReason: "end",
    });
  });

  it("translates the conversation, tools and settings into chat.completions", async () => {
    await collect(
      provider().stream(
        request({
          messages: [
            { role: "user", content: "What is the weather in Paris?" },
            {
              role: "assistant",
              content: "",
              toolCalls: [{ id: "call_1", name: "weather", arguments: { city: "Paris" } }],
            },
            { role: "tool", toolCallId: "call_1", content: "18°C, cloudy" },
            { role: "assistant", content: "18°C and cloudy." },
            { role: "user", content: "Thanks!" },
          ],
          tools: [
            {
              name: "weather",
              description: "Current weather",
              parameters: { type: "object", properties: { city: { type: "string" } } },
            },
          ],
        }),
      ),
    );
    const sent = fake.requests[0]!;
    expect(sent.apiKey).toBe(KEY);
    expect(sent.system).toBe("You are Ada, a helpful agent.");
    expect(sent.lastUserText).toBe("Thanks!");
    expect(sent.body).toMatchObject({
      model: "gpt-test",
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.3,
      // Not api.openai.com: compatible servers get the classic parameter.
      max_tokens: 256,
      tools: [
        {
          type: "function",
          function: {
            name: "weather",
            description: "Current weather",
            parameters: { type: "object", properties: { city: { type: "string" } } },
          },
        },
      ],
    });
    expect(sent.body["messages"]).toEqual([
      { role: "system", content: "You are Ada, a helpful agent." },
      { role: "user", content: "What is the weather in Paris?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: "call_1",
            type: "function",
            function: { name: "weather", arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "18°C, cloudy" },
      { role: "assistant", content: "18°C and cloudy." },
      { role: "user", content: "Thanks!" },
    ]);
  });

  it("uses max_completion_tokens against api.openai.com itself", () => {
    const params = toOpenAIParams(request(), true);
    expect(params).toMatchObject({ max_completion_tokens: 256 });
    expect(params).not.toHaveProperty("max_tokens");
  });

  it("assembles tool calls from streamed argument fragments", async () => {
    const args = { query: 'matrix spec "threads"', limit: 3, tags: ["a", "ü", "🎉"] };
    fake.enqueue({
      kind: "reply",
      text: "Let me look.",
      toolCalls: [
        { name: "search", arguments: args },
        { name: "remember", arguments: { fact: "likes tea" } },
      ],
      argumentChunks: 7,
    });
    const events = await collect(provider().stream(request()));
    const calls = events.flatMap((e) => (e.type === "tool_call" ? [e.call] : []));
    expect(textOf(events)).toBe("Let me look.");
    expect(calls.map((c) => [c.name, c.arguments])).toEqual([
      ["search", args],
      ["remember", { fact: "likes tea" }],
    ]);
    expect(calls[0]!.id).toMatch(/^call_/);
    expect(events.at(-1)).toMatchObject({ type: "done", stopReason: "tool_use" });
  });

  it("tolerates servers that send no usage and no tool call ids", async () => {
    fake.enqueue({
      kind: "reply",
      toolCalls: [
        { name: "a", arguments: {}, id: null },
        { name: "b", arguments: { x: 1 }, id: null },
      ],
      usage: "none",
    });
    const events = await collect(provider().stream(request()));
    const calls = events.flatMap((e) => (e.type === "tool_call" ? [e.call] : []));
    expect(calls.map((c) => c.name)).toEqual(["a", "b"]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
    expect(calls.every((c) => c.id.length > 0)).toBe(true);
    const done = events.at(-1);
    expect(done).toMatchObject({ type: "done", usage: { estimated: true } });
    expect(done?.type === "done" && done.usage.inputTokens).toBeGreaterThan(0);
  });

  it("maps finish_reason length to max_tokens", async () => {
    fake.enqueue({ kind: "reply", text: "cut", stopReason: "max_tokens" });
    const events = await collect(provider().stream(request()));
    expect(events.at(-1)).toMatchObject({ type: "done", stopReason: "max_tokens" });
  });

  it("fails with auth on a wrong key, without retrying and without the key in the message", async () => {
    const error = await expectKind(provider({}, "sk-wrong-key").stream(request()), "auth");
    expect(error.message).toBe(
      "The openai API key was rejected. A tenant admin can set a new key.",
    );
    expect(error.message).not.toContain("sk-wrong-key");
    expect(error.status).toBe(401);
    expect(fake.requests).toHaveLength(1);
  });

  it("retries a 500 before the stream starts and then succeeds", async () => {
    fake.enqueue(
      { kind: "error", status: 500, retryAfterMs: 1 },
      { kind: "reply", text: "recovered" },
    );
    const events = await collect(provider().stream(request()));
    expect(textOf(events)).toBe("recovered");
    expect(fake.requests).toHaveLength(2);
  });

  it("gives up with unavailable after maxRetries persistent 500s", async () => {
    fake.respondWith(() => ({ kind: "error", status: 500, retryAfterMs: 1 }));
    const error = await expectKind(provider({ maxRetries: 2 }).stream(request()), "unavailable");
    expect(error.status).toBe(500);
    expect(fake.requests).toHaveLength(3);
  });

  it("fails with rate_limited after retrying 429s", async () => {
    fake.enqueue(
      ...Array.from({ length: 2 }, () => ({
        kind: "error" as const,
        status: 429,
        retryAfterMs: 1,
      })),
    );
    await expectKind(provider({ maxRetries: 1 }).stream(request()), "rate_limited");
    expect(fake.requests).toHaveLength(2);
  });

  it("fails with bad_request for an unknown model and keeps the vendor's reason", async () => {
    fake.enqueue({ kind: "error", status: 404, message: "The model `gpt-nope` does not exist" });
    const error = await expectKind(provider().stream(request()), "bad_request");
    expect(error.details).toMatchObject({ vendorMessage: "The model `gpt-nope` does not exist" });
    expect(fake.requests).toHaveLength(1);
  });

  it("times out within timeoutMs when the server never answers, retries included", async () => {
    fake.respondWith(() => ({ kind: "hang" }));
    const started = performance.now();
    await expectKind(provider({ timeoutMs: 400, maxRetries: 2 }).stream(request()), "timeout");
    expect(performance.now() - started).toBeLessThan(2_500);
    await fake.waitForNoOpenResponses();
  });

  it("times out on a stream that stalls mid-way, long before the deadline", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three four five",
      interrupt: { afterEvents: 3, then: "stall" },
    });
    const started = performance.now();
    const { error, events } = await failure(
      provider({ timeoutMs: 30_000, idleTimeoutMs: 200 }).stream(request()),
    );
    expect(error.kind).toBe("timeout");
    expect(textOf(events)).toBe("one two ");
    expect(performance.now() - started).toBeLessThan(5_000);
    await fake.waitForNoOpenResponses();
  });

  it("fails with bad_response on garbage instead of SSE", async () => {
    fake.enqueue({ kind: "garbage" });
    await expectKind(provider().stream(request()), "bad_response");
  });

  it("fails with bad_response when the stream ends without a finish_reason", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three",
      interrupt: { afterEvents: 2, then: "end" },
    });
    const { error, events } = await failure(provider().stream(request()));
    expect(error.kind).toBe("bad_response");
    expect(textOf(events)).toBe("one ");
  });

  it("fails with bad_response when the connection drops mid-stream, and does not retry", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three",
      interrupt: { afterEvents: 2, then: "disconnect" },
    });
    const { error, events } = await failure(provider().stream(request()));
    expect(error.kind).toBe("bad_response");
    expect(textOf(events)).toBe("one ");
    expect(fake.requests).toHaveLength(1);
  });

  it("maps an error event inside the stream to unavailable", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three",
      interrupt: { afterEvents: 2, then: "error" },
    });
    await expectKind(provider().stream(request()), "unavailable");
  });

  it("fails with unavailable when nothing listens at the base URL", async () => {
    const gone = await startFakeOpenAI();
    await gone.close();
    const stream = createModelProvider(
      "openai",
      { apiKey: KEY, baseUrl: gone.url },
      { timeoutMs: 5_000, maxRetries: 0 },
    ).stream(request());
    await expectKind(stream, "unavailable");
  });

  it("stops mid-stream when the caller aborts", async () => {
    fake.chunkDelayMs = 20;
    fake.enqueue({ kind: "reply", text: "word ".repeat(1_000) });
    const controller = new AbortController();
    const events: ModelStreamEvent[] = [];
    const started = performance.now();
    const error = await (async () => {
      try {
        for await (const event of provider().stream(request({ signal: controller.signal }))) {
          events.push(event);
          if (events.length === 2) controller.abort();
        }
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(isModelFailure(error) && error.kind).toBe("aborted");
    expect(events).toHaveLength(2);
    expect(performance.now() - started).toBeLessThan(5_000);
    // The HTTP response was cancelled too, not left streaming into the void.
    await fake.waitForNoOpenResponses();
  });

  it("does not call the server when the signal is already aborted", async () => {
    await expectKind(provider().stream(request({ signal: AbortSignal.abort() })), "aborted");
    expect(fake.requests).toHaveLength(0);
  });

  it("lets a consumer break out early", async () => {
    fake.chunkDelayMs = 20;
    fake.enqueue({ kind: "reply", text: "word ".repeat(100) });
    for await (const event of provider().stream(request())) {
      expect(event.type).toBe("text");
      break;
    }
    await fake.waitForNoOpenResponses();
    fake.chunkDelayMs = 0;
    const events = await collect(
      provider().stream(request({ messages: [{ role: "user", content: "again" }] })),
    );
    expect(textOf(events)).toBe("echo: again");
  });
});

describe("fake OpenAI server", () => {
  it("answers non-streaming requests like the real API", async () => {
    fake.enqueue({ kind: "reply", text: "plain", toolCalls: [{ name: "t", arguments: { a: 1 } }] });
    const client = new OpenAI({ apiKey: KEY, baseURL: fake.url, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(completion.choices[0]!.message.content).toBe("plain");
    expect(completion.choices[0]!.message.tool_calls?.[0]).toMatchObject({
      type: "function",
      function: { name: "t", arguments: '{"a":1}' },
    });
    expect(completion.choices[0]!.finish_reason).toBe("tool_calls");
  });

  it("rejects a conversation whose tool calls have no results, like the real API", async () => {
    const stream = provider().stream(
      request({
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "t", arguments: {} }] },
        ],
      }),
    );
    await expectKind(stream, "bad_request");
  });

  it("lets a test wait for the n-th request", async () => {
    fake.enqueue({ kind: "hang" });
    const controller = new AbortController();
    const running = collect(provider().stream(request({ signal: controller.signal }))).catch(
      (e: unknown) => e,
    );
    const seen = await fake.waitForRequest(1);
    expect(seen.stream).toBe(true);
    controller.abort();
    expect(isModelFailure(await running)).toBe(true);
  });
});
