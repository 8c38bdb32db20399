import Anthropic from "@anthropic-ai/sdk";
import type {
  ContentBlockParam,
  MessageCreateParamsStreaming,
  MessageParam,
  RawMessageStreamEvent,
  StopReason as AnthropicStopReason,
  Tool,
} from "@anthropic-ai/sdk/resources/messages";
import type { VendorStream, VendorStreamContext } from "./provider.ts";
import type {
  ChatMessage,
  ModelClientOptions,
  ModelCredentials,
  ModelRequest,
  ModelStreamEvent,
  StopReason,
} from "./types.ts";

export const ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com";

/**
 * Opens streaming Messages API calls. Errors are thrown as the SDK raised
 * them; provider.ts maps them and enforces deadlines.
 */
export function createAnthropicStream(
  credentials: ModelCredentials,
  options: ModelClientOptions,
): VendorStream {
  const client = new Anthropic({
    apiKey: credentials.apiKey,
    // Explicit, so ANTHROPIC_BASE_URL of the host never redirects a tenant's traffic.
    baseURL: credentials.baseUrl ?? ANTHROPIC_DEFAULT_BASE_URL,
    timeout: options.timeoutMs,
    maxRetries: options.maxRetries,
    // Failures surface as ModelFailure with the SDK error as cause; the SDK must not print to the console.
    logLevel: "off",
  });
  return (request, context) => streamMessage(client, toAnthropicParams(request), context);
}

export function toAnthropicParams(request: ModelRequest): MessageCreateParamsStreaming {
  const tools: Tool[] | undefined = request.tools?.map((tool) => ({
    name: tool.name,
    description: tool.description,
    input_schema: { type: "object", ...tool.parameters },
  }));
  return {
    model: request.model,
    max_tokens: request.maxTokens,
    // No temperature: API version 2026-10-21, which this SDK sends, rejects every
    // sampling parameter with a 400, so ModelRequest.temperature does not apply here.
    messages: toAnthropicMessages(request.messages),
    stream: true,
    ...(request.system.length > 0 ? { system: request.system } : {}),
    ...(tools !== undefined && tools.length > 0 ? { tools } : {}),
  };
}

/**
 * Anthropic wants tool results as blocks of the next user turn, all results
 * for one assistant turn in the same message, and no empty content; so
 * consecutive turns of one role merge into one message of blocks.
 */
export function toAnthropicMessages(messages: readonly ChatMessage[]): MessageParam[] {
  const result: { role: "user" | "assistant"; content: ContentBlockParam[] }[] = [];
  for (const message of messages) {
    const role = message.role === "assistant" ? "assistant" : "user";
    const blocks = toBlocks(message);
    if (blocks.length === 0) continue;
    const last = result.at(-1);
    if (last?.role === role) last.content.push(...blocks);
    else result.push({ role, content: blocks });
  }
  // A lone text block goes as a plain string: the shape the API documents first.
  return result.map(({ role, content }) => {
    const only = content.length === 1 ? content[0] : undefined;
    return { role, content: only?.type === "text" ? only.text : content };
  });
}

function toBlocks(message: ChatMessage): ContentBlockParam[] {
  switch (message.role) {
    case "user":
      return message.content.length > 0 ? [{ type: "text", text: message.content }] : [];
    case "tool":
      return [{ type: "tool_result", tool_use_id: message.toolCallId, content: message.content }];
    case "assistant": {
      const blocks: ContentBlockParam[] = [];
      if (message.content.length > 0) blocks.push({ type: "text", text: message.content });
      for (const call of message.toolCalls ?? []) {
        blocks.push({
          type: "tool_use",
          id: call.id,
          name: call.name,
          input: { ...call.arguments },
        });
      }
      return blocks;
    }
  }
}

interface ToolUseInProgress {
  readonly id: string;
  readonly name: string;
  /** What content_block_start carried; proxies that do not stream inputs put them all here. */
  readonly startInput: unknown;
  json: string;
}

async function* streamMessage(
  client: Anthropic,
  params: MessageCreateParamsStreaming,
  context: VendorStreamContext,
): AsyncGenerator<ModelStreamEvent> {
  const stream = await client.messages.create(params, { signal: context.signal });
  const toolUses = new Map<number, ToolUseInProgress>();
  let inputTokens = 0;
  let outputTokens = 0;
  let stopReason: AnthropicStopReason | null = null;
  let stopped = false;

  for await (const event of stream as AsyncIterable<RawMessageStreamEvent>) {
    switch (event.type) {
      case "message_start": {
        const usage = event.message.usage;
        // Cached prompt tokens are still prompt tokens the request used.
        inputTokens =
          usage.input_tokens +
          (usage.cache_creation_input_tokens ?? 0) +
          (usage.cache_read_input_tokens ?? 0);
        outputTokens = usage.output_tokens;
        break;
      }
      case "content_block_start": {
        const block = event.content_block;
        if (block.type === "tool_use") {
          context.onProgress();
          toolUses.set(event.index, {
            id: block.id,
            name: block.name,
            startInput: block.input,
            json: "",
          });
        } else if (block.type === "text" && block.text.length > 0) {
          context.onProgress();
          yield { type: "text", delta: block.text };
        }
        break;
      }
      case "content_block_delta": {
        // Thinking and signature deltas are output too, just not shown.
        context.onProgress();
        const delta = event.delta;
        if (delta.type === "text_delta" && delta.text.length > 0) {
          yield { type: "text", delta: delta.text };
        } else if (delta.type === "input_json_delta") {
          const toolUse = toolUses.get(event.index);
          if (toolUse !== undefined) toolUse.json += delta.partial_json;
        }
        break;
      }
      case "content_block_stop": {
        const toolUse = toolUses.get(event.index);
        if (toolUse !== undefined) {
          toolUses.delete(event.index);
          yield {
            type: "tool_call",
            call: { id: toolUse.id, name: toolUse.name, arguments: inputOf(toolUse) },
          };
        }
        break;
      }
      case "message_delta": {
        context.onProgress();
        stopReason = event.delta.stop_reason ?? stopReason;
        // message_delta usage is cumulative, so it replaces what message_start said.
        outputTokens = event.usage.output_tokens;
        const usage = event.usage;
        if (typeof usage.input_tokens === "number") {
          inputTokens =
            usage.input_tokens +
            (usage.cache_creation_input_tokens ?? 0) +
            (usage.cache_read_input_tokens ?? 0);
        }
        break;
      }
      case "message_stop":
        stopped = true;
        break;
    }
  }

  // Without message_stop the answer may be cut short, and unfinished tool inputs are unusable.
  if (!stopped) throw new Anthropic.AnthropicError("stream ended without message_stop");
  yield {
    type: "done",
    usage: { inputTokens, outputTokens },
    stopReason: stopReasonOf(stopReason),
  };
}

function inputOf(toolUse: ToolUseInProgress): Record<string, unknown> {
  const json = toolUse.json;
  if (json.trim().length === 0) return isPlainObject(toolUse.startInput) ? toolUse.startInput : {};
  try {
    const parsed: unknown = JSON.parse(json);
    return isPlainObject(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stopReasonOf(reason: AnthropicStopReason | null): StopReason {
  switch (reason) {
    case "tool_use":
      return "tool_use";
    case "max_tokens":
    case "model_context_window_exceeded":
      return "max_tokens";
    default:
      return "end";
  }
}
