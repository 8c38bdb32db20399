import type { ModelProviderName } from "../config/schema.ts";

export type { ModelProviderName };

/** A tool the model may call; `parameters` is a JSON Schema object. */
export interface ToolDefinition {
  readonly name: string;
  readonly description: string;
  readonly parameters: Readonly<Record<string, unknown>>;
}

export interface ToolCall {
  readonly id: string;
  readonly name: string;
  /** Parsed arguments; `{}` when the model sent none or sent unparsable JSON. */
  readonly arguments: Readonly<Record<string, unknown>>;
}

/** One turn of a conversation, provider-neutral; adapters translate it. */
export type ChatMessage =
  | { readonly role: "user"; readonly content: string }
  | {
      readonly role: "assistant";
      readonly content: string;
      readonly toolCalls?: readonly ToolCall[];
    }
  | { readonly role: "tool"; readonly toolCallId: string; readonly content: string };

export interface ModelRequest {
  readonly model: string;
  /** Instructions, persona, memories: everything that is not a chat turn. */
  readonly system: string;
  readonly messages: readonly ChatMessage[];
  readonly tools?: readonly ToolDefinition[];
  /** Sent to OpenAI-compatible servers only: Anthropic's API (2026-10-21) refuses sampling parameters. */
  readonly temperature: number;
  readonly maxTokens: number;
  /** Aborts the request and the stream. */
  readonly signal?: AbortSignal;
}

export interface TokenUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  /**
   * True when the server reported no usage (some OpenAI-compatible servers
   * do not) and the counts are a rough estimate from character counts.
   */
  readonly estimated?: boolean;
}

export type StopReason = "end" | "tool_use" | "max_tokens";

/**
 * What a streaming call yields, in order: any number of `text` deltas and
 * `tool_call`s (each call complete, with parsed arguments), then exactly one
 * `done`. A stream that ends without `done` is a provider failure.
 */
export type ModelStreamEvent =
  | { readonly type: "text"; readonly delta: string }
  | { readonly type: "tool_call"; readonly call: ToolCall }
  | { readonly type: "done"; readonly usage: TokenUsage; readonly stopReason: StopReason };

export interface ModelProvider {
  readonly name: ModelProviderName;
  /**
   * Streams one completion. Retries transient failures (connection errors,
   * 429, 5xx) before the first event only, so a retry never repeats text.
   * Throws ModelFailure (src/models/failure.ts) for every failure, before or
   * during the stream; an abort through `request.signal` is a ModelFailure of
   * kind "aborted". Breaking out of the iteration cancels the HTTP request.
   */
  stream(request: ModelRequest): AsyncIterable<ModelStreamEvent>;
}

export interface ModelCredentials {
  readonly apiKey: string;
  /** Overrides the provider's default endpoint (OpenAI-compatible servers, proxies). */
  readonly baseUrl?: string | undefined;
}

export interface ModelClientOptions {
  /** Bounds one whole call: connecting, the SDK's retries and the entire stream. */
  readonly timeoutMs: number;
  /** Retries the SDK makes before a response starts (connection errors, 408, 409, 429, 5xx). */
  readonly maxRetries: number;
  /**
   * Longest silence allowed once the model has started producing output;
   * a stream that stalls longer fails with "timeout" well before `timeoutMs`.
   * Defaults to min(timeoutMs, 30 s).
   */
  readonly idleTimeoutMs?: number;
}
