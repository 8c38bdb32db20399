import Anthropic from "@anthropic-ai/sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  isModelFailure,
  type ModelFailure,
  type ModelFailureKind,
} from "../../src/models/failure.ts";
import { createModelProvider } from "../../src/models/provider.ts";
import type { ModelClientOptions, ModelRequest, ModelStreamEvent } from "../../src/models/types.ts";
import { echoResponder, type FakeModelServer, startFakeAnthropic } from "../support/fake-models.ts";

const KEY = "sk-ant-test-0123456789";
const OPTIONS: ModelClientOptions = { timeoutMs: 5_000, maxRetries: 2 };

let fake: FakeModelServer;

beforeAll(async () => {
  fake = await startFakeAnthropic({ apiKeys: [KEY] });
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
    model: "claude-test",
    system: "You are Ada, a helpful agent.",
    messages: [{ role: "user", content: "Hello" }],
    temperature: 0.3,
    maxTokens: 256,
    ...overrides,
  };
}

function provider(options: Partial<ModelClientOptions> = {}, apiKey = KEY) {
  return createModelProvider(
    "anthropic",
    { apiKey, baseUrl: fake.url },
    { ...OPTIONS, ...options },
  );
}

async function collect(stream: AsyncIterable<ModelStreamEvent>): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

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
  expect(error.message).toContain("anthropic");
  expect(error.message).not.toContain(KEY);
  return error;
}

describe("Anthropic provider", () => {
  it("streams text deltas in order, with usage from message_start and message_delta", async () => {
    fake.enqueue({
      kind: "reply",
      text: "The quick brown fox jumps",
      chunks: 5,
      usage: { inputTokens: 25, outputTokens: 17 },
    });
    const events = await collect(provider().stream(request()));
    expect(events.filter((e) => e.type === "text")).toHaveLength(5);
    expect(textOf(events)).toBe("The quick brown fox jumps");
    expect(events.at(-1)).toEqual({
      type: "done",
      usage: { inputTokens: 25, outputTokens: 17 },
      stopReason: "end",
    });
  });

  it("sends the system prompt, tool_use and tool_result blocks, and no sampling parameters", async () => {
    await collect(
      provider().stream(
        request({
          messages: [
            { role: "user", content: "Weather in Paris and Rome?" },
            {
              role: "assistant",
              content: "Checking both.",
              toolCalls: [
                { id: "toolu_1", name: "weather", arguments: { city: "Paris" } },
                { id: "toolu_2", name: "weather", arguments: { city: "Rome" } },
              ],
            },
            { role: "tool", toolCallId: "toolu_1", content: "18°C" },
            { role: "tool", toolCallId: "toolu_2", content: "24°C" },
            { role: "assistant", content: "Paris 18°C, Rome 24°C." },
            { role: "user", content: "Thanks!" },
          ],
          tools: [
            {
              name: "weather",
              description: "Current weather",
              parameters: {
                type: "object",
                properties: { city: { type: "string" } },
                required: ["city"],
              },
            },
          ],
        }),
      ),
    );
    const sent = fake.requests[0]!;
    expect(sent.apiKey).toBe(KEY);
    expect(sent.headers["anthropic-version"]).toBeDefined();
    expect(sent.system).toBe("You are Ada, a helpful agent.");
    expect(sent.body).toMatchObject({
      model: "claude-test",
      max_tokens: 256,
      stream: true,
      system: "You are Ada, a helpful agent.",
      tools: [
        {
          name: "weather",
          description: "Current weather",
          input_schema: {
            type: "object",
            properties: { city: { type: "string" } },
            required: ["city"],
          },
        },
      ],
    });
    // API version 2026-10-21 answers 400 to any sampling parameter.
    expect(sent.body).not.toHaveProperty("temperature");
    expect(sent.body["messages"]).toEqual([
      { role: "user", content: "Weather in Paris and Rome?" },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Checking both." },
          { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Paris" } },
          { type: "tool_use", id: "toolu_2", name: "weather", input: { city: "Rome" } },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: "18°C" },
          { type: "tool_result", tool_use_id: "toolu_2", content: "24°C" },
        ],
      },
      { role: "assistant", content: "Paris 18°C, Rome 24°C." },
      { role: "user", content: "Thanks!" },
    ]);
  });

  it("leaves out empty turns and the system prompt when there is none", async () => {
    await collect(
      provider().stream(
        request({
          system: "",
          messages: [
            { role: "user", content: "a" },
            { role: "assistant", content: "" },
            { role: "user", content: "b" },
          ],
        }),
      ),
    );
    const sent = fake.requests[0]!;
    expect(sent.body).not.toHaveProperty("system");
    expect(sent.body["messages"]).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "a" },
          { type: "text", text: "b" },
        ],
      },
    ]);
  });

  it("assembles tool_use inputs from input_json_delta fragments", async () => {
    const input = { query: 'matrix "threads"', limit: 3, tags: ["ü", "🎉"] };
    fake.enqueue({
      kind: "reply",
      text: "Let me look.",
      toolCalls: [
        { name: "search", arguments: input },
        { name: "remember", arguments: { fact: "likes tea" } },
      ],
      argumentChunks: 9,
    });
    const events = await collect(provider().stream(request()));
    const calls = events.flatMap((e) => (e.type === "tool_call" ? [e.call] : []));
    expect(textOf(events)).toBe("Let me look.");
    expect(calls.map((c) => [c.name, c.arguments])).toEqual([
      ["search", input],
      ["remember", { fact: "likes tea" }],
    ]);
    expect(calls[0]!.id).toMatch(/^toolu_/);
    expect(events.at(-1)).toMatchObject({ type: "done", stopReason: "tool_use" });
  });

  it("maps stop_reason max_tokens", async () => {
    fake.enqueue({ kind: "reply", text: "cut", stopReason: "max_tokens" });
    const events = await collect(provider().stream(request()));
    expect(events.at(-1)).toMatchObject({ type: "done", stopReason: "max_tokens" });
  });

  it("fails with auth on a wrong key, without retrying", async () => {
    const error = await expectKind(provider({}, "sk-ant-wrong").stream(request()), "auth");
    expect(error.message).toBe(
      "The anthropic API key was rejected. A tenant admin can set a new key.",
    );
    expect(error.message).not.toContain("sk-ant-wrong");
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

  it("gives up with unavailable after maxRetries persistent 529 overloaded answers", async () => {
    fake.respondWith(() => ({ kind: "error", status: 529, retryAfterMs: 1 }));
    const error = await expectKind(provider({ maxRetries: 2 }).stream(request()), "unavailable");
    expect(error.status).toBe(529);
    expect(fake.requests).toHaveLength(3);
  });

  it("fails with rate_limited after retrying 429s", async () => {
    fake.respondWith(() => ({ kind: "error", status: 429, retryAfterMs: 1 }));
    await expectKind(provider({ maxRetries: 1 }).stream(request()), "rate_limited");
    expect(fake.requests).toHaveLength(2);
  });

  it("fails with bad_request for an unknown model and keeps the vendor's reason", async () => {
    fake.enqueue({ kind: "error", status: 404, message: "model: claude-nope" });
    const error = await expectKind(provider().stream(request()), "bad_request");
    expect(error.details).toMatchObject({ vendorMessage: "model: claude-nope" });
  });

  it("times out within timeoutMs when the server never answers, retries included", async () => {
    fake.respondWith(() => ({ kind: "hang" }));
    const started = performance.now();
    await expectKind(provider({ timeoutMs: 400, maxRetries: 2 }).stream(request()), "timeout");
    expect(performance.now() - started).toBeLessThan(2_500);
    await fake.waitForNoOpenResponses();
  });

  it("times out on a stream that stalls mid-way, long before the deadline", async () => {
    // message_start, content_block_start, ping, then two text deltas.
    fake.enqueue({
      kind: "reply",
      text: "one two three four",
      interrupt: { afterEvents: 5, then: "stall" },
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
    fake.enqueue({ kind: "garbage", body: "event: message_start\ndata: {not json\n\n" });
    await expectKind(provider().stream(request()), "bad_response");
  });

  it("fails with bad_response when the stream ends without message_stop", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three",
      interrupt: { afterEvents: 4, then: "end" },
    });
    const { error, events } = await failure(provider().stream(request()));
    expect(error.kind).toBe("bad_response");
    expect(textOf(events)).toBe("one ");
  });

  it("fails with bad_response when the connection drops mid-stream, and does not retry", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three",
      interrupt: { afterEvents: 4, then: "disconnect" },
    });
    const { error, events } = await failure(provider().stream(request()));
    expect(error.kind).toBe("bad_response");
    expect(textOf(events)).toBe("one ");
    expect(fake.requests).toHaveLength(1);
  });

  it("maps an overloaded_error event inside the stream to unavailable", async () => {
    fake.enqueue({
      kind: "reply",
      text: "one two three",
      interrupt: { afterEvents: 4, then: "error" },
    });
    await expectKind(provider().stream(request()), "unavailable");
  });

  it("stops mid-stream when the caller aborts", async () => {
    fake.chunkDelayMs = 20;
    fake.enqueue({ kind: "reply", text: "word ".repeat(1_000) });
    const controller = new AbortController();
    const events: ModelStreamEvent[] = [];
    const started = performance.now();
    let caught: unknown;
    try {
      for await (const event of provider().stream(request({ signal: controller.signal }))) {
        events.push(event);
        if (events.length === 2) controller.abort();
      }
    } catch (error) {
      caught = error;
    }
    expect(isModelFailure(caught) && caught.kind).toBe("aborted");
    expect(events).toHaveLength(2);
    expect(performance.now() - started).toBeLessThan(5_000);
    // The HTTP response was cancelled too, not left streaming into the void.
    await fake.waitForNoOpenResponses();
  });

  it("lets a consumer break out early and cancels the response", async () => {
    fake.chunkDelayMs = 20;
    fake.enqueue({ kind: "reply", text: "word ".repeat(100) });
    for await (const event of provider().stream(request())) {
      expect(event.type).toBe("text");
      break;
    }
    await fake.waitForNoOpenResponses();
  });
});

describe("fake Anthropic server", () => {
  it("answers non-streaming requests and accepts x-api-key like the real API", async () => {
    fake.enqueue({ kind: "reply", text: "plain", toolCalls: [{ name: "t", arguments: { a: 1 } }] });
    const client = new Anthropic({
      apiKey: null,
      baseURL: fake.url,
      maxRetries: 0,
      defaultHeaders: { "x-api-key": KEY },
    });
    const message = await client.messages.create({
      model: "m",
      max_tokens: 10,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(message.content[0]).toMatchObject({ type: "text", text: "plain" });
    expect(message.content[1]).toMatchObject({ type: "tool_use", name: "t", input: { a: 1 } });
    expect(message.stop_reason).toBe("tool_use");
    expect(fake.requests[0]!.apiKey).toBe(KEY);
  });

  it("rejects a tool_use without a tool_result right after, like the real API", async () => {
    const stream = provider().stream(
      request({
        messages: [
          { role: "user", content: "x" },
          {
            role: "assistant",
            content: "",
            toolCalls: [{ id: "toolu_9", name: "t", arguments: {} }],
          },
          { role: "user", content: "never mind" },
        ],
      }),
    );
    const error = await expectKind(stream, "bad_request");
    expect(String(error.details?.["vendorMessage"])).toContain("toolu_9");
  });

  it("echoes tool results by default, for end-to-end tests", async () => {
    const events = await collect(
      provider().stream(
        request({
          messages: [
            { role: "user", content: "x" },
            {
              role: "assistant",
              content: "",
              toolCalls: [{ id: "toolu_1", name: "t", arguments: {} }],
            },
            { role: "tool", toolCallId: "toolu_1", content: "42" },
          ],
        }),
      ),
    );
    expect(textOf(events)).toBe("tool said: 42");
    expect(fake.requests[0]!.lastToolResult).toBe("42");
  });
});
