import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

/**
 * provisioning/compose/supervise.sh, the entrypoint of docker-compose.yml's
 * Synapse and bridge services, run for real with a stand-in process that
 * records its pid: it starts on the ready marker, restarts when the marker
 * changes or the process dies, and stays stopped while the stopped marker
 * exists.
 */

const SCRIPT = fileURLToPath(new URL("../../provisioning/compose/supervise.sh", import.meta.url));

let dir: string;
let supervisor: ChildProcess;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 50));
  }
}

/** The pid the current process wrote, once it is alive and not `previous`. */
function childPid(previous?: number): Promise<number> {
  return until(async () => {
    const text = await readFile(join(dir, "pid"), "utf8").catch(() => "");
    const pid = Number(text.trim());
    return pid > 0 && pid !== previous && alive(pid) ? pid : undefined;
  }, "the supervised process");
}

function gone(pid: number): Promise<true> {
  return until(() => Promise.resolve(alive(pid) ? undefined : true), `pid ${pid} to exit`);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "supervise-"));
  supervisor = spawn(
    "sh",
    [SCRIPT, dir, "sh", "-c", `echo $$ > ${join(dir, "pid")}; exec sleep 1000`],
    { env: { ...process.env, SUPERVISE_INTERVAL: "0.1" }, stdio: "ignore" },
  );
});

afterEach(async () => {
  if (supervisor.exitCode === null && supervisor.signalCode === null) {
    const exited = new Promise((resolveExit) => supervisor.once("exit", resolveExit));
    supervisor.kill("SIGTERM");
    await exited;
  }
  await rm(dir, { recursive: true, force: true });
});

describe("compose supervisor", () => {
  it("starts on ready, restarts on change or death, stops while stopped, and ends its child", async () => {
    await writeFile(join(dir, "ready"), "hash-a\n");
    const first = await childPid();

    await writeFile(join(dir, "ready"), "hash-b\n");
    const second = await childPid(first);
    await gone(first);

    process.kill(second, "SIGKILL");
    const third = await childPid(second);

    await writeFile(join(dir, "stopped"), "");
    await gone(third);
    await unlink(join(dir, "stopped"));
    const fourth = await childPid(third);

    supervisor.kill("SIGTERM");
    await gone(fourth);
    expect(alive(fourth)).toBe(false);
  });
});
