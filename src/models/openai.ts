import { randomUUID } from "node:crypto";
import OpenAI from "openai";
import type {
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageParam,
  ChatCompletionTool,
} from "openai/resources/chat/completions";
import type { VendorStream, VendorStreamContext } from "./provider.ts";
import type {
  ChatMessage,
  ModelClientOptions,
  ModelCredentials,
  ModelRequest,
  ModelStreamEvent,
  StopReason,
  TokenUsage,
  ToolCall,
} from "./types.ts";

export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";

/** Rough characters per token, for servers that report no usage. */
const CHARS_PER_TOKEN_ESTIMATE = 4;

/**
 * Opens streaming chat completions against OpenAI or any server that speaks
 * its protocol (Ollama, vLLM, llama.cpp, OpenRouter). Errors are thrown as the
 * SDK raised them; provider.ts maps them and enforces deadlines.
 */
export function createOpenAIStream(
  credentials: ModelCredentials,
  options: ModelClientOptions,
): VendorStream {
  const baseURL = credentials.baseUrl ?? OPENAI_DEFAULT_BASE_URL;
  const client = new OpenAI({
    apiKey: credentials.apiKey,
    baseURL,
    // Explicit nulls keep OPENAI_ORG_ID / OPENAI_PROJECT_ID of the host out of tenants' requests.
    organization: null,
    project: null,
    timeout: options.timeoutMs,
    maxRetries: options.maxRetries,
    // Failures surface as ModelFailure with the SDK error as cause; the SDK must not print to the console.
    logLevel: "off",
  });
  // api.openai.com wants max_completion_tokens (reasoning models reject max_tokens);
  // many compatible servers only know max_tokens.
  const isOpenAIItself = new URL(baseURL).hostname === "api.openai.com";
  return (request, context) =>
    streamCompletion(client, toOpenAIParams(request, isOpenAIItself), request, context);
}

export function toOpenAIParams(
  request: ModelRequest,
  isOpenAIItself: boolean,
): ChatCompletionCreateParamsStreaming {
  const messages: ChatCompletionMessageParam[] = [];
  if (request.system.length > 0) messages.push({ role: "system", content: request.system });
  for (const message of request.messages) messages.push(toOpenAIMessage(message));
  const tools: ChatCompletionTool[] | undefined = request.tools?.map((tool) => ({
    type: "function",
    function: {
      name: tool.name,
      description: tool.description,
      parameters: { ...tool.parameters },
    },
  }));
  return {
    model: request.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: request.temperature,
    ...(isOpenAIItself
      ? { max_completion_tokens: request.maxTokens }
      : // eslint-disable-next-line @typescript-eslint/no-deprecated -- Ollama, llama.cpp and older vLLM only know max_tokens
        { max_tokens: request.maxTokens }),
    ...(tools !== undefined && tools.length > 0 ? { tools } : {}),
  };
}

function toOpenAIMessage(message: ChatMessage): ChatCompletionMessageParam {
  switch (message.role) {
    case "user":
      return { role: "user", content: message.content };
    case "tool":
      return { role: "tool", tool_call_id: message.toolCallId, content: message.content };
    case "assistant": {
      const calls = message.toolCalls ?? [];
      if (calls.length === 0) return { role: "assistant", content: message.content };
      return {
        role: "assistant",
        // The API wants null rather than "" next to tool calls.
        content: message.content.length > 0 ? message.content : null,
        tool_calls: calls.map((call) => ({
          id: call.id,
          type: "function",
          function: { name: call.name, arguments: JSON.stringify(call.arguments) },
        })),
      };
    }
  }
}

/** A tool call being assembled from streamed fragments. */
interface PartialCall {
  id: string | undefined;
  name: string;
  argumentText: string;
  /** Set by servers that send arguments as an object instead of a JSON string. */
  argumentObject: Record<string, unknown> | undefined;
}

/**
 * Chunks as OpenAI-compatible servers really send them: the SDK's types
 * promise fields (index, id, choices) that some servers leave out.
 */
interface LooseChunk {
  readonly choices?: readonly LooseChoice[] | null;
  readonly usage?: { readonly prompt_tokens?: number; readonly completion_tokens?: number } | null;
}
interface LooseChoice {
  readonly index?: number;
  readonly delta?: {
    readonly content?: string | null;
    readonly tool_calls?: readonly LooseToolCallFragment[] | null;
  } | null;
  readonly finish_reason?: string | null;
}
interface LooseToolCallFragment {
  readonly index?: number;
  readonly id?: string | null;
  readonly function?: { readonly name?: string | null; readonly arguments?: unknown } | null;
}

async function* streamCompletion(
  client: OpenAI,
  params: ChatCompletionCreateParamsStreaming,
  request: ModelRequest,
  context: VendorStreamContext,
): AsyncGenerator<ModelStreamEvent> {
  const stream = await client.chat.completions.create(params, { signal: context.signal });
  // Indexed by the vendor's tool-call index; a server skipping one leaves a hole.
  const calls: (PartialCall | undefined)[] = [];
  let finishReason: string | undefined;
  let usage: TokenUsage | undefined;
  let outputChars = 0;

  for await (const chunk of stream as AsyncIterable<LooseChunk>) {
    if (chunk.usage) {
      usage = {
        inputTokens: chunk.usage.prompt_tokens ?? 0,
        outputTokens: chunk.usage.completion_tokens ?? 0,
      };
    }
    // n is 1, so only choice 0 matters; the usage chunk has no choices.
    const choice = chunk.choices?.find((c) => (c.index ?? 0) === 0);
    if (choice === undefined) continue;
    const text = choice.delta?.content;
    if (typeof text === "string" && text.length > 0) {
      context.onProgress();
      outputChars += text.length;
      yield { type: "text", delta: text };
    }
    for (const fragment of choice.delta?.tool_calls ?? []) {
      context.onProgress();
      addFragment(calls, fragment);
    }
    if (typeof choice.finish_reason === "string" && choice.finish_reason.length > 0) {
      context.onProgress();
      finishReason = choice.finish_reason;
    }
  }

  // A stream cut off before the finish reason may have lost text or arguments.
  if (finishReason === undefined)
    throw new OpenAI.OpenAIError("stream ended without a finish_reason");
  const toolCalls = calls.filter((call) => call !== undefined).map(completeCall);
  for (const call of toolCalls) {
    outputChars += JSON.stringify(call.arguments).length;
    yield { type: "tool_call", call };
  }
  yield {
    type: "done",
    usage: usage ?? estimateUsage(request, outputChars),
    stopReason: stopReasonOf(finishReason, toolCalls.length > 0),
  };
}

/**
 * Merges one streamed fragment into the calls so far. OpenAI sends `index`
 * on every fragment and id/name on the first; compatible servers may send
 * whole calls without index or id, so fall back to matching by id, then to
 * "a fragment with a name starts a new call".
 */
function addFragment(calls: (PartialCall | undefined)[], fragment: LooseToolCallFragment): void {
  const index = typeof fragment.index === "number" ? fragment.index : undefined;
  let call: PartialCall | undefined;
  if (index !== undefined) {
    call = calls[index];
  } else if (fragment.id) {
    call = calls.find((c) => c?.id === fragment.id);
  } else if (!fragment.function?.name) {
    call = calls.at(-1);
  }
  if (call === undefined) {
    call = { id: undefined, name: "", argumentText: "", argumentObject: undefined };
    if (index !== undefined) calls[index] = call;
    else calls.push(call);
  }
  if (fragment.id) call.id = fragment.id;
  const fn = fragment.function;
  if (fn?.name && call.name.length === 0) call.name = fn.name;
  const args: unknown = fn?.arguments;
  if (typeof args === "string") call.argumentText += args;
  else if (typeof args === "object" && args !== null)
    call.argumentObject = args as Record<string, unknown>;
}

function completeCall(call: PartialCall): ToolCall {
  // The id only pairs the call with its result in the next request; any unique value works.
  const id = call.id ?? `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`;
  return {
    id,
    name: call.name,
    arguments: call.argumentObject ?? parseArguments(call.argumentText),
  };
}

function parseArguments(text: string): Record<string, unknown> {
  if (text.trim().length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

function stopReasonOf(finishReason: string, hasToolCalls: boolean): StopReason {
  if (finishReason === "length") return "max_tokens";
  // Some servers (older Ollama) say "stop" even when they called tools.
  if (finishReason === "tool_calls" || finishReason === "function_call" || hasToolCalls)
    return "tool_use";
  return "end";
}

function estimateUsage(request: ModelRequest, outputChars: number): TokenUsage {
  let inputChars = request.system.length;
  for (const message of request.messages) {
    inputChars += message.content.length;
    if (message.role === "assistant") {
      for (const call of message.toolCalls ?? [])
        inputChars += JSON.stringify(call.arguments).length;
    }
  }
  for (const tool of request.tools ?? []) inputChars += JSON.stringify(tool).length;
  return {
    inputTokens: Math.ceil(inputChars / CHARS_PER_TOKEN_ESTIMATE),
    outputTokens: Math.ceil(outputChars / CHARS_PER_TOKEN_ESTIMATE),
    estimated: true,
  };
}
