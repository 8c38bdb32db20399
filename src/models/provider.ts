import { createAnthropicStream } from "./anthropic.ts";
import { ModelFailure, toModelFailure } from "./failure.ts";
import { createOpenAIStream } from "./openai.ts";
import type {
  ModelClientOptions,
  ModelCredentials,
  ModelProvider,
  ModelProviderName,
  ModelRequest,
  ModelStreamEvent,
} from "./types.ts";

/** What a vendor adapter gets for one call. */
export interface VendorStreamContext {
  /**
   * Aborted on the deadline, the idle timeout, the caller's abort, or when the
   * consumer stops iterating. Adapters pass it to the SDK so the HTTP request dies too.
   */
  readonly signal: AbortSignal;
  /**
   * Adapters call this for every chunk that carries model output (text, tool
   * call fragments, stop reason), including chunks that yield no event yet,
   * so a long tool call being streamed does not look like a stall.
   */
  onProgress(): void;
}

/**
 * One call to a vendor: its stream translated into ModelStreamEvents, ending
 * with exactly one `done`, or throwing if the stream ends without its final
 * event. Errors are thrown as the SDK raised them; the guard here maps them.
 */
export type VendorStream = (
  request: ModelRequest,
  context: VendorStreamContext,
) => AsyncIterable<ModelStreamEvent>;

/** Idle timeout when ModelClientOptions leaves it out (capped by timeoutMs). */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 30_000;

/**
 * A provider for one tenant's (or the operator's) credentials. Cheap to keep:
 * the SDK client inside holds no connection until a call.
 *
 * Retries are the SDK's: it retries connection errors, 408/409/429 and 5xx
 * with exponential backoff, but only before a response starts, so text the
 * user has already seen is never repeated. Failures after that end the call.
 */
export function createModelProvider(
  name: ModelProviderName,
  credentials: ModelCredentials,
  options: ModelClientOptions,
): ModelProvider {
  const open =
    name === "openai"
      ? createOpenAIStream(credentials, options)
      : createAnthropicStream(credentials, options);
  const limits: CallLimits = {
    timeoutMs: options.timeoutMs,
    idleTimeoutMs:
      options.idleTimeoutMs ?? Math.min(options.timeoutMs, DEFAULT_STREAM_IDLE_TIMEOUT_MS),
  };
  return {
    name,
    stream: (request) => guardStream(name, open, request, limits, credentials.apiKey),
  };
}

interface CallLimits {
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
}

type StopCause = "deadline" | "idle" | "caller";
const STOPPED = Symbol("stopped");

function stoppedFailure(
  provider: ModelProviderName,
  cause: StopCause,
  limits: CallLimits,
): ModelFailure {
  if (cause === "caller") return new ModelFailure(provider, "aborted");
  const why =
    cause === "idle"
      ? `no output from ${provider} for ${limits.idleTimeoutMs} ms`
      : `${provider} call exceeded ${limits.timeoutMs} ms`;
  return new ModelFailure(provider, "timeout", { cause: new Error(why) });
}

/**
 * Runs one vendor stream under a deadline, an idle watchdog and the caller's
 * signal, and turns every failure into a ModelFailure. Each wait for the next
 * event races against the stop signal, so a stop takes effect at once even if
 * the SDK is slow to notice its own abort.
 */
async function* guardStream(
  provider: ModelProviderName,
  open: VendorStream,
  request: ModelRequest,
  limits: CallLimits,
  apiKey: string,
): AsyncGenerator<ModelStreamEvent> {
  if (request.signal?.aborted === true) throw new ModelFailure(provider, "aborted");
  const controller = new AbortController();
  let cause: StopCause | undefined;
  const stop = (why: StopCause): void => {
    cause ??= why;
    controller.abort();
  };
  const stopped = new Promise<typeof STOPPED>((resolve) => {
    controller.signal.addEventListener(
      "abort",
      () => {
        resolve(STOPPED);
      },
      { once: true },
    );
  });
  const onCallerAbort = (): void => {
    stop("caller");
  };
  request.signal?.addEventListener("abort", onCallerAbort, { once: true });
  let deadline: NodeJS.Timeout | undefined = setTimeout(() => {
    stop("deadline");
  }, limits.timeoutMs);

  // The watchdog runs only while waiting on the vendor after output has begun:
  // time to first token can be long, and time the consumer spends is not the vendor's.
  let idle: NodeJS.Timeout | undefined;
  // An object, not two lets: TypeScript does not see the closures below change them.
  const watch = { outputStarted: false, waiting: false };
  const armIdle = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      stop("idle");
    }, limits.idleTimeoutMs);
  };
  const context: VendorStreamContext = {
    signal: controller.signal,
    onProgress: () => {
      watch.outputStarted = true;
      if (watch.waiting) armIdle();
    },
  };
  const release = (): void => {
    clearTimeout(deadline);
    clearTimeout(idle);
    deadline = undefined;
    request.signal?.removeEventListener("abort", onCallerAbort);
  };

  const iterator = open(request, context)[Symbol.asyncIterator]();
  let finished = false;
  let sawDone = false;
  try {
    for (;;) {
      if (watch.outputStarted) armIdle();
      watch.waiting = true;
      const next = iterator.next();
      // If a stop wins the race, the SDK's later rejection must not go unhandled.
      next.catch(() => undefined);
      let result: IteratorResult<ModelStreamEvent> | typeof STOPPED;
      try {
        result = await Promise.race([next, stopped]);
      } catch (error) {
        throw cause === undefined
          ? toModelFailure(provider, error, apiKey)
          : stoppedFailure(provider, cause, limits);
      } finally {
        watch.waiting = false;
        clearTimeout(idle);
      }
      if (result === STOPPED) throw stoppedFailure(provider, cause ?? "caller", limits);
      if (result.done === true) {
        finished = true;
        if (!sawDone)
          throw new ModelFailure(provider, "bad_response", {
            cause: new Error("stream ended without done"),
          });
        return;
      }
      if (result.value.type === "done") {
        sawDone = true;
        // A consumer may stop calling next() after `done`: do not leave timers behind.
        release();
      }
      yield result.value;
    }
  } finally {
    release();
    if (!finished) {
      controller.abort();
      // Not awaited: a generator still awaiting the SDK finishes on its own once the abort lands.
      iterator.return?.(undefined).catch(() => undefined);
    }
  }
}
