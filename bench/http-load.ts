/**
 * A closed-loop HTTP load generator, run in a worker thread so that building
 * requests and parsing responses does not share the event loop of the server
 * under test. Each virtual client sends one request, waits for the whole
 * response, and sends the next, over its own keep-alive connection.
 */
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";

/** One virtual client: what it sends on every request. */
export interface LoadClient {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
}

export interface LoadJob {
  readonly method: "GET" | "POST";
  /** One entry per concurrent client. */
  readonly clients: readonly LoadClient[];
  /** A response with another status counts as an error. */
  readonly expectStatus: number;
  /** Sent but not measured (connections, JIT, caches). */
  readonly warmupMs: number;
  readonly durationMs: number;
}

/**
 * A request is measured when its response ends inside the measured window,
 * whenever it was sent: counting by send time would leave out, at high
 * concurrency, the queue of requests sent during the warm-up and so
 * understate throughput. Responses after the window are not counted.
 */
export interface LoadResult {
  /** Latencies of the measured requests, in milliseconds. */
  readonly latenciesMs: number[];
  readonly errors: number;
  /** Requests completed outside the measured window (not in latenciesMs or errors). */
  readonly unmeasuredRequests: number;
  readonly firstError: string | undefined;
  /** The measured window. */
  readonly measuredMs: number;
}

function send(
  agent: Agent,
  job: LoadJob,
  client: LoadClient,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      client.url,
      { method: job.method, agent, headers: client.headers },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
          });
        });
        response.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(client.body);
  });
}

export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: job.clients.length });
  const latenciesMs: number[] = [];
  let errors = 0;
  let unmeasuredRequests = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const measureFrom = start + job.warmupMs;
  const end = measureFrom + job.durationMs;

  const loop = async (client: LoadClient): Promise<void> => {
    while (performance.now() < end) {
      const sent = performance.now();
      let failure: string | undefined;
      try {
        const { status, body } = await send(agent, job, client);
        if (status !== job.expectStatus) failure = `HTTP ${String(status)}: ${body.slice(0, 200)}`;
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }
      const done = performance.now();
      if (done < measureFrom || done > end) {
        unmeasuredRequests += 1;
        continue;
      }
      if (failure === undefined) latenciesMs.push(done - sent);
      else {
        errors += 1;
        firstError ??= failure;
      }
    }
  };
  await Promise.all(job.clients.map(loop));
  agent.destroy();
  return { latenciesMs, errors, unmeasuredRequests, firstError, measuredMs: job.durationMs };
}

if (parentPort !== null) {
  const port = parentPort;
  runLoad(workerData as LoadJob).then(
    (result) => {
      port.postMessage(result);
    },
    (error: unknown) => {
      throw error;
    },
  );
}
