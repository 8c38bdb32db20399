import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { anthropicDialect } from "./fake-anthropic.ts";
import { openAIDialect } from "./fake-openai.ts";

/**
 * Fake OpenAI and Anthropic servers: real HTTP on 127.0.0.1 speaking each
 * vendor's wire protocol (SSE streams and plain JSON), for the real SDKs to
 * talk to through `baseURL`. Every request is recorded; each answer comes from
 * a queue of scripted behaviours, else from the default responder (an echo).
 *
 *   const fake = await startFakeOpenAI({ apiKeys: ["sk-test"] });
 *   fake.enqueue({ kind: "error", status: 500 }, { kind: "reply", text: "Hi there", chunks: 2 });
 *   ... createModelProvider("openai", { apiKey: "sk-test", baseUrl: fake.url }, options) ...
 *   expect(fake.requests[1]!.system).toContain("You are Ada");
 */

export type FakeVendor = "openai" | "anthropic";

export interface FakeToolCall {
  readonly name: string;
  readonly arguments: Readonly<Record<string, unknown>>;
  /** Default: a fresh vendor-style id; `null` sends none (some OpenAI-compatible servers). */
  readonly id?: string | null;
}

export interface FakeUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** Stops a stream early, after `afterEvents` SSE events of the normal script. */
export interface FakeInterruption {
  readonly afterEvents: number;
  /**
   * stall: keep the connection open and send nothing more;
   * disconnect: destroy the socket; end: finish the HTTP response cleanly
   * without the final events; error: send the vendor's in-stream error event.
   */
  readonly then: "stall" | "disconnect" | "end" | "error";
}

export interface FakeReply {
  readonly text?: string;
  readonly toolCalls?: readonly FakeToolCall[];
  /** Pieces the text is streamed in; default one per word. */
  readonly chunks?: number;
  /** Pieces each tool call's JSON arguments are streamed in; default 3. */
  readonly argumentChunks?: number;
  /** Default: estimated from characters. "none": no usage at all, like some compatible servers. */
  readonly usage?: FakeUsage | "none";
  /** Default: "tool_use" with tool calls, else "end". */
  readonly stopReason?: "end" | "max_tokens" | "tool_use";
  /** Pause before each SSE event, overriding the server's `chunkDelayMs`. */
  readonly chunkDelayMs?: number;
  readonly interrupt?: FakeInterruption;
}

export type FakeBehaviour =
  | ({ readonly kind: "reply" } & FakeReply)
  /** The vendor's JSON error for this status; retryAfterMs sets retry-after(-ms) headers. */
  | {
      readonly kind: "error";
      readonly status: number;
      readonly message?: string;
      readonly retryAfterMs?: number;
    }
  /** Read the request, never answer (no status line). */
  | { readonly kind: "hang" }
  /** 200 with an event-stream content type and a body that is not valid SSE JSON. */
  | { readonly kind: "garbage"; readonly body?: string };

/** Computes the answer for requests the queue does not cover. */
export type FakeResponder = (request: RecordedRequest) => FakeReply | FakeBehaviour;

export interface RecordedRequest {
  readonly vendor: FakeVendor;
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The key presented (Authorization: Bearer or x-api-key). */
  readonly apiKey: string | undefined;
  /** The JSON body as sent; `{}` when it did not parse. */
  readonly body: Record<string, unknown>;
  readonly model: string;
  readonly stream: boolean;
  /** The system prompt: OpenAI system/developer messages joined, or Anthropic's `system`. */
  readonly system: string;
  /** Text of the last user turn that was not a tool result ("" if none). */
  readonly lastUserText: string;
  /** Content of the last tool result, when the conversation ends with one. */
  readonly lastToolResult: string | undefined;
  readonly toolNames: readonly string[];
}

export interface FakeModelServerOptions {
  /** Keys accepted; any other gets the vendor's 401. Default: any non-empty key. */
  readonly apiKeys?: readonly string[];
  readonly respond?: FakeResponder;
  /** Pause before each SSE event; 0 (the default) streams as fast as the socket takes it. */
  readonly chunkDelayMs?: number;
}

/** A reply with defaults applied and text cut into the pieces to stream. */
export interface ResolvedReply {
  readonly model: string;
  readonly text: string;
  readonly textPieces: readonly string[];
  readonly toolCalls: readonly {
    readonly id: string | null | undefined;
    readonly name: string;
    readonly json: string;
    readonly jsonPieces: readonly string[];
  }[];
  readonly usage: FakeUsage | undefined;
  readonly stopReason: "end" | "max_tokens" | "tool_use";
  /** OpenAI only: the client asked for a usage chunk. */
  readonly includeUsage: boolean;
}

/** The vendor-specific half of a fake: paths, headers, wire formats. */
export interface FakeDialect {
  readonly vendor: FakeVendor;
  /** The one endpoint served, e.g. "/v1/chat/completions". */
  readonly path: string;
  /** Appended to the origin to form the SDK's baseURL. */
  readonly basePath: string;
  apiKeyOf(headers: IncomingHttpHeaders): string | undefined;
  describe(
    body: Record<string, unknown>,
  ): Omit<RecordedRequest, "vendor" | "method" | "path" | "headers" | "apiKey" | "body">;
  /** Why the real API would answer 400, if it would. */
  validate(body: Record<string, unknown>, headers: IncomingHttpHeaders): string | undefined;
  errorBody(status: number, message: string | undefined): unknown;
  streamFrames(reply: ResolvedReply): string[];
  streamErrorFrame(): string;
  jsonBody(reply: ResolvedReply): unknown;
}

const DEFAULT_ARGUMENT_CHUNKS = 3;
const DEFAULT_WAIT_TIMEOUT_MS = 5_000;
const CHARS_PER_TOKEN = 4;

/** Answers like a friendly model: echoes the last user text or tool result. */
export const echoResponder: FakeResponder = (request) => ({
  text:
    request.lastToolResult !== undefined
      ? `tool said: ${request.lastToolResult}`
      : `echo: ${request.lastUserText}`,
});

export class FakeModelServer {
  readonly vendor: FakeVendor;
  /** Base URL for the SDK: `http://127.0.0.1:PORT/v1` (OpenAI) or `http://127.0.0.1:PORT` (Anthropic). */
  readonly url: string;
  readonly requests: RecordedRequest[] = [];
  /** Pause before each SSE event for replies that do not set their own. */
  chunkDelayMs: number;
  private readonly server: Server;
  private readonly dialect: FakeDialect;
  private readonly queue: FakeBehaviour[] = [];
  private responder: FakeResponder;
  private apiKeys: readonly string[] | undefined;
  private readonly openResponses = new Set<ServerResponse>();
  private waiters: { ready: () => boolean; resolve: () => void }[] = [];

  constructor(server: Server, dialect: FakeDialect, options: FakeModelServerOptions) {
    this.server = server;
    this.dialect = dialect;
    this.vendor = dialect.vendor;
    this.responder = options.respond ?? echoResponder;
    this.apiKeys = options.apiKeys;
    this.chunkDelayMs = options.chunkDelayMs ?? 0;
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}${dialect.basePath}`;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      this.openResponses.add(res);
      res.on("close", () => {
        this.openResponses.delete(res);
        this.notify();
      });
      this.handle(req, res).catch(() => res.destroy());
    });
  }

  /** Queues behaviours for the next requests, one each, in order; retries consume entries too. */
  enqueue(...behaviours: FakeBehaviour[]): this {
    this.queue.push(...behaviours);
    return this;
  }

  /** Replaces the default responder used once the queue is empty. */
  respondWith(responder: FakeResponder): this {
    this.responder = responder;
    return this;
  }

  /** Keys accepted from now on; `undefined` accepts any non-empty key. */
  acceptKeys(keys: readonly string[] | undefined): this {
    this.apiKeys = keys;
    return this;
  }

  /** Forgets recorded requests and queued behaviours (responder, keys and delay stay). */
  reset(): void {
    this.requests.length = 0;
    this.queue.length = 0;
  }

  /** Resolves with the n-th request (1-based) once it has arrived. */
  async waitForRequest(n: number, timeoutMs = DEFAULT_WAIT_TIMEOUT_MS): Promise<RecordedRequest> {
    await this.waitUntil(() => this.requests.length >= n, timeoutMs, `request ${n} to arrive`);
    return this.requests[n - 1]!;
  }

  /** Responses not yet finished: streaming, stalled, hanging, or not noticed as cancelled. */
  get openResponseCount(): number {
    return this.openResponses.size;
  }

  /** Resolves once every response has ended or its client has hung up: proof a cancel reached the wire. */
  async waitForNoOpenResponses(timeoutMs = DEFAULT_WAIT_TIMEOUT_MS): Promise<void> {
    await this.waitUntil(() => this.openResponses.size === 0, timeoutMs, "all responses to close");
  }

  private async waitUntil(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (ready()) return;
    const done = new Promise<void>((resolve) => this.waiters.push({ ready, resolve }));
    const timedOut = delay(timeoutMs, "timeout" as const, { ref: false });
    if ((await Promise.race([done, timedOut])) === "timeout") {
      throw new Error(
        `fake ${this.vendor}: gave up after ${timeoutMs} ms waiting for ${what} (requests: ${this.requests.length}, open responses: ${this.openResponses.size})`,
      );
    }
  }

  private notify(): void {
    const ready = this.waiters.filter((waiter) => waiter.ready());
    this.waiters = this.waiters.filter((waiter) => !ready.includes(waiter));
    for (const waiter of ready) waiter.resolve();
  }

  /** Stops listening and cuts every open connection, hanging ones included. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) =>
      this.server.close(() => {
        resolve();
      }),
    );
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    let body: Record<string, unknown> = {};
    let parsed = true;
    try {
      const value: unknown = JSON.parse(Buffer.concat(parts).toString("utf8"));
      if (typeof value === "object" && value !== null && !Array.isArray(value))
        body = value as Record<string, unknown>;
      else parsed = false;
    } catch {
      parsed = false;
    }
    const apiKey = this.dialect.apiKeyOf(req.headers);
    const request: RecordedRequest = {
      vendor: this.vendor,
      method: req.method ?? "GET",
      path,
      headers: req.headers,
      apiKey,
      body,
      ...this.dialect.describe(body),
    };
    this.requests.push(request);
    this.notify();

    if (req.method !== "POST" || path !== this.dialect.path) {
      this.sendError(res, 404, `Unknown route ${path}`);
      return;
    }
    const keyOk =
      apiKey !== undefined && apiKey.length > 0 && (this.apiKeys?.includes(apiKey) ?? true);
    if (!keyOk) {
      this.sendError(res, 401, undefined);
      return;
    }
    if (!parsed) {
      this.sendError(res, 400, "The request body is not valid JSON.");
      return;
    }
    const invalid = this.dialect.validate(body, req.headers);
    if (invalid !== undefined) {
      this.sendError(res, 400, invalid);
      return;
    }

    const next = this.queue.shift() ?? this.responder(request);
    const behaviour: FakeBehaviour = "kind" in next ? next : { kind: "reply", ...next };
    switch (behaviour.kind) {
      case "hang":
        return;
      case "error": {
        this.sendError(res, behaviour.status, behaviour.message, behaviour.retryAfterMs);
        return;
      }
      case "garbage":
        res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
        res.end(behaviour.body ?? 'this is not an event stream\ndata: {"choices": [oops\n\n');
        return;
      case "reply":
        return this.sendReply(res, request, behaviour);
    }
  }

  private sendError(
    res: ServerResponse,
    status: number,
    message: string | undefined,
    retryAfterMs?: number,
  ): void {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (retryAfterMs !== undefined) {
      headers["retry-after-ms"] = String(retryAfterMs);
      headers["retry-after"] = String(Math.ceil(retryAfterMs / 1000));
    }
    res.writeHead(status, headers);
    res.end(JSON.stringify(this.dialect.errorBody(status, message)));
  }

  private async sendReply(
    res: ServerResponse,
    request: RecordedRequest,
    reply: FakeReply,
  ): Promise<void> {
    const resolved = resolveReply(request, reply);
    const interrupt = reply.interrupt;
    if (!request.stream) {
      if (interrupt?.then === "stall") return;
      if (interrupt !== undefined) return void res.socket?.destroy();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(this.dialect.jsonBody(resolved)));
      return;
    }
    const frames = this.dialect.streamFrames(resolved);
    const delayMs = reply.chunkDelayMs ?? this.chunkDelayMs;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
    });
    // Interruptions wait for what was written to reach the client, so "mid-stream" really is.
    let flushed = Promise.resolve();
    for (const [index, frame] of frames.entries()) {
      if (interrupt !== undefined && index === interrupt.afterEvents) {
        await flushed;
        this.interrupt(res, interrupt);
        return;
      }
      if (delayMs > 0) await delay(delayMs);
      if (res.destroyed) return;
      flushed = new Promise((resolve) =>
        res.write(frame, () => {
          resolve();
        }),
      );
    }
    if (interrupt !== undefined && interrupt.afterEvents >= frames.length) {
      await flushed;
      this.interrupt(res, interrupt);
      return;
    }
    res.end();
  }

  private interrupt(res: ServerResponse, interrupt: FakeInterruption): void {
    switch (interrupt.then) {
      case "stall":
        return;
      case "disconnect":
        res.socket?.destroy();
        return;
      case "end":
        res.end();
        return;
      case "error":
        res.end(this.dialect.streamErrorFrame());
        return;
    }
  }
}

function resolveReply(request: RecordedRequest, reply: FakeReply): ResolvedReply {
  const text = reply.text ?? "";
  const toolCalls = (reply.toolCalls ?? []).map((call) => {
    const json = JSON.stringify(call.arguments);
    return {
      id: call.id,
      name: call.name,
      json,
      jsonPieces: splitEvenly(json, reply.argumentChunks ?? DEFAULT_ARGUMENT_CHUNKS),
    };
  });
  const outputChars = text.length + toolCalls.reduce((sum, call) => sum + call.json.length, 0);
  const promptChars = JSON.stringify(request.body["messages"] ?? []).length + request.system.length;
  const usage =
    reply.usage === "none"
      ? undefined
      : (reply.usage ?? {
          inputTokens: Math.max(1, Math.ceil(promptChars / CHARS_PER_TOKEN)),
          outputTokens: Math.max(1, Math.ceil(outputChars / CHARS_PER_TOKEN)),
        });
  const streamOptions = request.body["stream_options"] as { include_usage?: unknown } | undefined;
  return {
    model: request.model,
    text,
    textPieces: reply.chunks === undefined ? splitWords(text) : splitEvenly(text, reply.chunks),
    toolCalls,
    usage,
    stopReason: reply.stopReason ?? (toolCalls.length > 0 ? "tool_use" : "end"),
    includeUsage: streamOptions?.include_usage === true,
  };
}

/** One piece per word, whitespace kept, so joining the pieces gives the text back. */
export function splitWords(text: string): string[] {
  return text.match(/\s*\S+\s*|\s+/gu) ?? [];
}

/** `count` pieces of near-equal length (fewer if the text is shorter), never splitting a code point. */
export function splitEvenly(text: string, count: number): string[] {
  const chars = Array.from(text);
  if (chars.length === 0) return [];
  const pieces = Math.max(1, Math.min(count, chars.length));
  const result: string[] = [];
  for (let i = 0; i < pieces; i++) {
    result.push(
      chars
        .slice(
          Math.floor((i * chars.length) / pieces),
          Math.floor(((i + 1) * chars.length) / pieces),
        )
        .join(""),
    );
  }
  return result;
}

async function start(
  dialect: FakeDialect,
  options: FakeModelServerOptions,
): Promise<FakeModelServer> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      resolve();
    });
  });
  return new FakeModelServer(server, dialect, options);
}

/** A fake OpenAI: `POST /v1/chat/completions`; give the SDK `fake.url` (ends in /v1). */
export function startFakeOpenAI(options: FakeModelServerOptions = {}): Promise<FakeModelServer> {
  return start(openAIDialect, options);
}

/** A fake Anthropic: `POST /v1/messages`; give the SDK `fake.url` (the bare origin). */
export function startFakeAnthropic(options: FakeModelServerOptions = {}): Promise<FakeModelServer> {
  return start(anthropicDialect, options);
}
