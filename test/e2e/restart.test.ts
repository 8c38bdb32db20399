import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { finalText, messageFrom, type MatrixTestUser } from "../support/matrix-user.ts";
import { startStack, type StackTenant, type TestStack } from "../support/stack.ts";

const ROOMS = 5;
const MESSAGES_PER_ROOM = 8;

/** Starts `switchboard runtime` as a separate process on the stack's database and port. */
async function spawnRuntime(configFile: string): Promise<ChildProcess> {
  const child = spawn(
    join(process.cwd(), "node_modules/.bin/node"),
    ["src/cli/main.ts", "--config", configFile, "runtime"],
    {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, LOG_LEVEL: "warn" },
    },
  );
  child.stderr?.resume();
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error("runtime did not start")), 30_000);
    const poll = (): void => {
      fetch(`http://127.0.0.1:${String(configPort(configFile))}/healthz`)
        .then((response) =>
          response.ok ? (clearTimeout(deadline), resolve()) : setTimeout(poll, 100),
        )
        .catch(() => setTimeout(poll, 100));
    };
    child.once("exit", (code) => reject(new Error(`runtime exited with ${String(code)}`)));
    poll();
  });
  return child;
}

const ports = new Map<string, number>();
const configPort = (file: string): number => ports.get(file) ?? 0;

describe("exactly once across a runtime crash", () => {
  let stack: TestStack;
  let acme: StackTenant;
  let child: ChildProcess | undefined;

  beforeAll(async () => {
    stack = await startStack();
    acme = await stack.addTenant("acme");
    await acme.createAgent({ name: "ada" });
  });

  afterAll(async () => {
    child?.kill("SIGKILL");
    await stack?.stop();
  });

  it("answers every message of a burst exactly once when the runtime is killed with SIGKILL mid-burst", async () => {
    const ada = acme.agentUserId("ada");
    const people: MatrixTestUser[] = [];
    const rooms: string[] = [];
    for (let index = 0; index < ROOMS; index++) {
      const person = await acme.user(`burst${String(index)}`);
      const roomId = await person.openDm(ada);
      people.push(person);
      rooms.push(roomId);
    }

    // Hand over from the in-process runtime to a separate process we can kill.
    await stack.app.runtime.stop();
    const directory = await mkdtemp(join(tmpdir(), "switchboard-restart-"));
    const configFile = join(directory, "config.yaml");
    const { config } = stack;
    ports.set(configFile, config.runtime.port);
    await writeFile(
      configFile,
      stringify({
        dataDir: directory,
        database: { url: stack.database.url },
        runtime: { port: config.runtime.port, editThrottleMs: 200 },
        secrets: config.secrets,
        models: {
          maxRetries: 0,
          // Generous: the machine may be busy; a model timeout here would be a false failure.
          timeoutMs: 30_000,
          openai: {
            baseUrl: stack.model.url,
            apiKey: config.models.openai.apiKey,
            defaultModel: "test-model",
          },
        },
      }),
    );
    // Slow answers, so the kill lands while turns are being streamed.
    stack.model.chunkDelayMs = 15;
    child = await spawnRuntime(configFile);

    const sends = people.flatMap((person, index) =>
      Array.from(
        { length: MESSAGES_PER_ROOM },
        (_, n) => () =>
          person.sendText(rooms[index] as string, `question ${String(index)}-${String(n)}`),
      ),
    );
    for (const send of sends) await send();

    // Kill once some, but not all, answers are out.
    await people[0]!.waitForEvents(rooms[0]!, messageFrom(ada), 2, 60_000);
    child.kill("SIGKILL");
    await new Promise((resolve) => child?.once("exit", resolve));
    child = await spawnRuntime(configFile);

    for (const [index, person] of people.entries()) {
      const roomId = rooms[index] as string;
      const replies = await person.waitForEvents(
        roomId,
        messageFrom(ada),
        MESSAGES_PER_ROOM,
        120_000,
      );
      const timeline = person.timeline.get(roomId) ?? [];
      // Let late duplicates, if any, arrive before counting.
      await person.sync(1_000);
      const texts = replies.map((reply) => finalText(timeline, reply));
      for (let n = 0; n < MESSAGES_PER_ROOM; n++) {
        expect(
          texts.filter((text) => text === `echo: question ${String(index)}-${String(n)}`),
          `room ${String(index)} message ${String(n)}; the agent said: ${JSON.stringify(texts)}`,
        ).toHaveLength(1);
      }
      expect(person.timeline.get(roomId)!.filter(messageFrom(ada))).toHaveLength(MESSAGES_PER_ROOM);
    }
  }, 240_000);
});
