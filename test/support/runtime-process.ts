import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import type { TestStack } from "./stack.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const START_TIMEOUT_MS = 30_000;
const HEALTH_POLL_MS = 100;
/** The end of the child's stderr kept for error messages (it logs at warn). */
const STDERR_TAIL_CHARS = 4_000;

/** A `switchboard runtime` child process, for tests that crash it. */
export interface RuntimeProcess {
  /** SIGKILL, as a crash (nothing drained or flushed); resolves once the process is gone. */
  kill(): Promise<void>;
  /** What the process wrote to stderr lately (warnings and errors). */
  readonly stderrTail: string;
}

export interface RuntimeLauncher {
  /** Starts a runtime process and resolves once its /healthz answers. */
  start(): Promise<RuntimeProcess>;
}

export interface HandOverOptions {
  readonly editThrottleMs: number;
  /** Generous by default: on a busy machine a model timeout would be a false failure. */
  readonly modelTimeoutMs?: number;
}

/**
 * Hands the stack's runtime over to child processes that a test can kill:
 * stops the in-process runtime (the stack keeps its database, homeservers and
 * fake model) and writes a config for `switchboard runtime` on the same
 * database, port, secrets and model server. Each start() is a fresh process.
 */
export async function handOverRuntime(
  stack: TestStack,
  options: HandOverOptions,
): Promise<RuntimeLauncher> {
  await stack.app.runtime.stop();
  const directory = await mkdtemp(join(tmpdir(), "switchboard-runtime-"));
  const configFile = join(directory, "config.yaml");
  const { config } = stack;
  await writeFile(
    configFile,
    stringify({
      dataDir: directory,
      database: { url: stack.database.url },
      runtime: { port: config.runtime.port, editThrottleMs: options.editThrottleMs },
      secrets: config.secrets,
      models: {
        maxRetries: 0,
        timeoutMs: options.modelTimeoutMs ?? 30_000,
        openai: {
          baseUrl: stack.model.url,
          apiKey: config.models.openai.apiKey,
          defaultModel: "test-model",
        },
      },
    }),
  );
  const healthUrl = `http://127.0.0.1:${String(config.runtime.port)}/healthz`;
  return { start: () => startRuntimeProcess(configFile, healthUrl) };
}

async function startRuntimeProcess(configFile: string, healthUrl: string): Promise<RuntimeProcess> {
  const child = spawn(process.execPath, [CLI, "--config", configFile, "runtime"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, LOG_LEVEL: "warn" },
  });
  let stderrTail = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-STDERR_TAIL_CHARS);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let settled = false;
  await new Promise<void>((resolve, reject) => {
    const settle = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (error === undefined) resolve();
      else reject(error);
    };
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
      settle(new Error(`runtime did not start: ${stderrTail}`));
    }, START_TIMEOUT_MS);
    child.once("exit", (code) => {
      settle(new Error(`runtime exited with ${String(code)}: ${stderrTail}`));
    });
    const poll = (): void => {
      if (settled) return;
      fetch(healthUrl)
        .then((response) => {
          if (response.ok) settle();
          else setTimeout(poll, HEALTH_POLL_MS);
        })
        .catch(() => setTimeout(poll, HEALTH_POLL_MS));
    };
    poll();
  });
  return {
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    get stderrTail() {
      return stderrTail;
    },
  };
}
