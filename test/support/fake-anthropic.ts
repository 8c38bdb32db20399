import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { FakeDialect, RecordedRequest, ResolvedReply } from "./fake-models.ts";

/**
 * Anthropic's Messages API wire format: named SSE events (message_start,
 * content_block_start/delta/stop, message_delta, message_stop, ping, error).
 * Validation follows API version 2026-10-21, the one SDK 1.x sends: sampling
 * parameters are refused, and every tool_use needs a tool_result right after.
 */

const STOP_REASON = { end: "end_turn", max_tokens: "max_tokens", tool_use: "tool_use" } as const;

const ERROR_SHAPE: Record<number, { type: string; message: string }> = {
  400: { type: "invalid_request_error", message: "Invalid request." },
  401: { type: "authentication_error", message: "invalid x-api-key" },
  403: {
    type: "permission_error",
    message: "Your API key does not have permission to use the specified resource.",
  },
  404: { type: "not_found_error", message: "The requested resource could not be found." },
  413: {
    type: "request_too_large",
    message: "Request exceeds the maximum allowed number of bytes.",
  },
  429: {
    type: "rate_limit_error",
    message: "Number of request tokens has exceeded your per-minute rate limit.",
  },
  500: { type: "api_error", message: "Internal server error" },
  529: { type: "overloaded_error", message: "Overloaded" },
};

const SAMPLING_PARAMETERS = ["temperature", "top_p", "top_k"];

const id = (prefix: string): string =>
  `${prefix}${randomBytes(18).toString("base64url").slice(0, 24)}`;

type Block = {
  type?: unknown;
  text?: unknown;
  id?: unknown;
  tool_use_id?: unknown;
  content?: unknown;
};
type Message = { role?: unknown; content?: unknown };

function blocksOf(content: unknown): Block[] {
  if (typeof content === "string") return [{ type: "text", text: content }];
  return Array.isArray(content) ? (content as Block[]) : [];
}

function textOf(content: unknown): string {
  return blocksOf(content)
    .map((block) => (block.type === "text" && typeof block.text === "string" ? block.text : ""))
    .join("");
}

function messagesOf(body: Record<string, unknown>): Message[] {
  return Array.isArray(body["messages"]) ? (body["messages"] as Message[]) : [];
}

function describe(
  body: Record<string, unknown>,
): Omit<RecordedRequest, "vendor" | "method" | "path" | "headers" | "apiKey" | "body"> {
  const messages = messagesOf(body);
  const userTexts = messages
    .filter((m) => m.role === "user")
    .map((m) => textOf(m.content))
    .filter((t) => t.length > 0);
  const lastBlocks = blocksOf(messages.at(-1)?.content);
  const lastResult =
    messages.at(-1)?.role === "user"
      ? lastBlocks.findLast((b) => b.type === "tool_result")
      : undefined;
  const tools = Array.isArray(body["tools"]) ? (body["tools"] as { name?: unknown }[]) : [];
  return {
    model: typeof body["model"] === "string" ? body["model"] : "",
    stream: body["stream"] === true,
    system: textOf(body["system"]),
    lastUserText: userTexts.at(-1) ?? "",
    lastToolResult: lastResult === undefined ? undefined : textOf(lastResult.content),
    toolNames: tools.map((tool) => (typeof tool.name === "string" ? tool.name : "")),
  };
}

function validate(body: Record<string, unknown>, headers: IncomingHttpHeaders): string | undefined {
  if (headers["anthropic-version"] === undefined) return "anthropic-version: header is required";
  for (const name of SAMPLING_PARAMETERS) {
    if (name in body) return `${name}: Extra inputs are not permitted`;
  }
  if (typeof body["model"] !== "string" || body["model"].length === 0)
    return "model: Field required";
  if (typeof body["max_tokens"] !== "number") return "max_tokens: Field required";
  const messages = messagesOf(body);
  if (messages.length === 0) return "messages: at least one message is required";
  for (const [index, message] of messages.entries()) {
    if (message.role !== "user" && message.role !== "assistant")
      return `messages.${index}.role: Input should be 'user' or 'assistant'`;
    const blocks = blocksOf(message.content);
    if (
      blocks.length === 0 ||
      (typeof message.content === "string" && message.content.length === 0)
    ) {
      return `messages.${index}: all messages must have non-empty content except for the optional final assistant message`;
    }
    const toolUses = blocks.filter((block) => block.type === "tool_use");
    if (message.role !== "assistant" || toolUses.length === 0) continue;
    const next = messages[index + 1];
    const results = new Set(
      blocksOf(next?.content)
        .filter((b) => b.type === "tool_result")
        .map((b) => b.tool_use_id),
    );
    const missing = toolUses.filter((use) => !results.has(use.id)).map((use) => String(use.id));
    if (next?.role !== "user" || missing.length > 0) {
      return `messages.${index + 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${missing.join(", ")}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`;
    }
  }
  return undefined;
}

function errorBody(status: number, message: string | undefined): unknown {
  const shape = ERROR_SHAPE[status] ?? (status >= 500 ? ERROR_SHAPE[500]! : ERROR_SHAPE[400]!);
  return {
    type: "error",
    error: { type: shape.type, message: message ?? shape.message },
    request_id: id("req_"),
  };
}

const event = (type: string, data: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

function startUsage(reply: ResolvedReply): Record<string, unknown> {
  return {
    input_tokens: reply.usage?.inputTokens ?? 0,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: 1,
    service_tier: "standard",
  };
}

function streamFrames(reply: ResolvedReply): string[] {
  const message = {
    id: id("msg_"),
    type: "message",
    role: "assistant",
    model: reply.model,
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: startUsage(reply),
  };
  const frames = [event("message_start", { message })];
  let index = 0;
  if (reply.textPieces.length > 0) {
    frames.push(
      event("content_block_start", {
        index,
        content_block: { type: "text", text: "", citations: null },
      }),
    );
    frames.push(event("ping", {}));
    for (const text of reply.textPieces)
      frames.push(event("content_block_delta", { index, delta: { type: "text_delta", text } }));
    frames.push(event("content_block_stop", { index }));
    index++;
  }
  for (const call of reply.toolCalls) {
    const block = { type: "tool_use", id: call.id ?? id("toolu_"), name: call.name, input: {} };
    frames.push(event("content_block_start", { index, content_block: block }));
    frames.push(
      event("content_block_delta", {
        index,
        delta: { type: "input_json_delta", partial_json: "" },
      }),
    );
    for (const partial_json of call.jsonPieces) {
      frames.push(
        event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json } }),
      );
    }
    frames.push(event("content_block_stop", { index }));
    index++;
  }
  frames.push(
    event("message_delta", {
      delta: { stop_reason: STOP_REASON[reply.stopReason], stop_sequence: null },
      usage: { output_tokens: reply.usage?.outputTokens ?? 0 },
    }),
  );
  frames.push(event("message_stop", {}));
  return frames;
}

function jsonBody(reply: ResolvedReply): unknown {
  const content: Record<string, unknown>[] = [];
  if (reply.text.length > 0) content.push({ type: "text", text: reply.text, citations: null });
  for (const call of reply.toolCalls) {
    content.push({
      type: "tool_use",
      id: call.id ?? id("toolu_"),
      name: call.name,
      input: JSON.parse(call.json) as unknown,
    });
  }
  return {
    id: id("msg_"),
    type: "message",
    role: "assistant",
    model: reply.model,
    content,
    stop_reason: STOP_REASON[reply.stopReason],
    stop_sequence: null,
    usage: { ...startUsage(reply), output_tokens: reply.usage?.outputTokens ?? 0 },
  };
}

export const anthropicDialect: FakeDialect = {
  vendor: "anthropic",
  path: "/v1/messages",
  basePath: "",
  // SDK 1.x sends the key as a Bearer token; older clients and curl use x-api-key (which wins, as on the real API).
  apiKeyOf: (headers) => {
    const header = headers["x-api-key"];
    if (typeof header === "string") return header;
    return /^Bearer (.+)$/i.exec(headers.authorization ?? "")?.[1];
  },
  describe,
  validate,
  errorBody,
  streamFrames,
  streamErrorFrame: () =>
    event("error", { error: { type: "overloaded_error", message: "Overloaded" } }),
  jsonBody,
};
