import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { FakeDialect, RecordedRequest, ResolvedReply } from "./fake-models.ts";

/**
 * OpenAI's chat.completions wire format, as api.openai.com sends it: chunk
 * objects on `data:` lines, a usage chunk with empty `choices` when
 * `stream_options.include_usage` is set, then `data: [DONE]`.
 */

const FINISH_REASON = { end: "stop", max_tokens: "length", tool_use: "tool_calls" } as const;

const ERROR_SHAPE: Record<number, { type: string; code: string | null; message: string }> = {
  400: { type: "invalid_request_error", code: null, message: "Invalid request." },
  401: {
    type: "invalid_request_error",
    code: "invalid_api_key",
    message: "Incorrect API key provided.",
  },
  403: {
    type: "invalid_request_error",
    code: "unsupported_country_region_territory",
    message: "Forbidden.",
  },
  404: {
    type: "invalid_request_error",
    code: "model_not_found",
    message: "The model does not exist.",
  },
  429: {
    type: "requests",
    code: "rate_limit_exceeded",
    message: "Rate limit reached for requests.",
  },
  500: {
    type: "server_error",
    code: null,
    message: "The server had an error while processing your request.",
  },
  503: {
    type: "server_error",
    code: null,
    message: "The engine is currently overloaded, please try again later.",
  },
};

const id = (prefix: string, length = 24): string =>
  `${prefix}${randomBytes(length).toString("base64url").slice(0, length)}`;

type Message = { role?: unknown; content?: unknown; tool_calls?: unknown; tool_call_id?: unknown };

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part: { type?: unknown; text?: unknown }) =>
        part.type === "text" && typeof part.text === "string" ? part.text : "",
      )
      .join("");
  }
  return "";
}

function messagesOf(body: Record<string, unknown>): Message[] {
  return Array.isArray(body["messages"]) ? (body["messages"] as Message[]) : [];
}

function describe(
  body: Record<string, unknown>,
): Omit<RecordedRequest, "vendor" | "method" | "path" | "headers" | "apiKey" | "body"> {
  const messages = messagesOf(body);
  const system = messages
    .filter((m) => m.role === "system" || m.role === "developer")
    .map((m) => textOf(m.content))
    .join("\n\n");
  const lastUser = messages.findLast((m) => m.role === "user");
  const last = messages.at(-1);
  const tools = Array.isArray(body["tools"])
    ? (body["tools"] as { function?: { name?: unknown } }[])
    : [];
  return {
    model: typeof body["model"] === "string" ? body["model"] : "",
    stream: body["stream"] === true,
    system,
    lastUserText: lastUser === undefined ? "" : textOf(lastUser.content),
    lastToolResult: last?.role === "tool" ? textOf(last.content) : undefined,
    toolNames: tools.map((tool) =>
      typeof tool.function?.name === "string" ? tool.function.name : "",
    ),
  };
}

/** The checks api.openai.com makes that a translation bug would trip. */
function validate(
  body: Record<string, unknown>,
  _headers: IncomingHttpHeaders,
): string | undefined {
  if (typeof body["model"] !== "string" || body["model"].length === 0)
    return "you must provide a model parameter";
  const messages = messagesOf(body);
  if (messages.length === 0) return "'messages' must contain at least one message.";
  if ("max_tokens" in body && "max_completion_tokens" in body) {
    return "max_tokens and max_completion_tokens cannot both be set.";
  }
  for (const [index, message] of messages.entries()) {
    if (!["system", "developer", "user", "assistant", "tool"].includes(String(message.role))) {
      return `Invalid value for 'messages[${index}].role'.`;
    }
    if (message.role !== "assistant" || !Array.isArray(message.tool_calls)) continue;
    // Every tool call must be answered by the tool messages that follow.
    const answered = new Set<unknown>();
    for (const later of messages.slice(index + 1)) {
      if (later.role !== "tool") break;
      answered.add(later.tool_call_id);
    }
    for (const call of message.tool_calls as { id?: unknown }[]) {
      if (!answered.has(call.id)) {
        return `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${String(call.id)}`;
      }
    }
  }
  return undefined;
}

function errorBody(status: number, message: string | undefined): unknown {
  const shape = ERROR_SHAPE[status] ?? (status >= 500 ? ERROR_SHAPE[500]! : ERROR_SHAPE[400]!);
  return {
    error: { message: message ?? shape.message, type: shape.type, param: null, code: shape.code },
  };
}

function streamFrames(reply: ResolvedReply): string[] {
  const base = {
    id: id("chatcmpl-"),
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: reply.model,
    system_fingerprint: "fp_fake",
  };
  const usageField = reply.includeUsage ? { usage: null } : {};
  const frame = (delta: Record<string, unknown>, finishReason: string | null = null): string =>
    `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }], ...usageField })}\n\n`;

  const frames = [
    frame({
      role: "assistant",
      content: reply.toolCalls.length > 0 && reply.text === "" ? null : "",
      refusal: null,
    }),
  ];
  for (const piece of reply.textPieces) frames.push(frame({ content: piece }));
  for (const [index, call] of reply.toolCalls.entries()) {
    const callId = call.id === undefined ? id("call_") : call.id;
    frames.push(
      frame({
        tool_calls: [
          {
            index,
            ...(callId === null ? {} : { id: callId }),
            type: "function",
            function: { name: call.name, arguments: "" },
          },
        ],
      }),
    );
    for (const piece of call.jsonPieces)
      frames.push(frame({ tool_calls: [{ index, function: { arguments: piece } }] }));
  }
  frames.push(frame({}, FINISH_REASON[reply.stopReason]));
  if (reply.includeUsage && reply.usage !== undefined) {
    frames.push(`data: ${JSON.stringify({ ...base, choices: [], usage: usageOf(reply) })}\n\n`);
  }
  frames.push("data: [DONE]\n\n");
  return frames;
}

function usageOf(reply: ResolvedReply): Record<string, unknown> | undefined {
  if (reply.usage === undefined) return undefined;
  const { inputTokens, outputTokens } = reply.usage;
  return {
    prompt_tokens: inputTokens,
    completion_tokens: outputTokens,
    total_tokens: inputTokens + outputTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function jsonBody(reply: ResolvedReply): unknown {
  const toolCalls = reply.toolCalls.map((call) => ({
    ...(call.id === null ? {} : { id: call.id ?? id("call_") }),
    type: "function",
    function: { name: call.name, arguments: call.json },
  }));
  return {
    id: id("chatcmpl-"),
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: reply.model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: reply.text === "" && toolCalls.length > 0 ? null : reply.text,
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: FINISH_REASON[reply.stopReason],
      },
    ],
    ...(reply.usage === undefined ? {} : { usage: usageOf(reply) }),
    system_fingerprint: "fp_fake",
  };
}

export const openAIDialect: FakeDialect = {
  vendor: "openai",
  path: "/v1/chat/completions",
  basePath: "/v1",
  apiKeyOf: (headers) => /^Bearer (.+)$/i.exec(headers.authorization ?? "")?.[1],
  describe,
  validate,
  errorBody,
  streamFrames,
  streamErrorFrame: () =>
    `data: ${JSON.stringify({ error: { message: "The server had an error while processing your request.", type: "server_error", param: null, code: null } })}\n\n`,
  jsonBody,
};
