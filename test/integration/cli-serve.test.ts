import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/synapse.ts";

/**
 * `switchboard serve`, the process docker-compose.yml runs: runtime, portal
 * and provisioner in one, started and stopped for real (PGlite, the local
 * driver, no tenants), answering on both listeners and leaving on SIGTERM.
 */

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "serve-"));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2_000) })).ok;
  } catch {
    return false;
  }
}

describe("switchboard serve", () => {
  it("runs the runtime and the portal (with the provisioner) and stops cleanly on SIGTERM", async () => {
    const [runtimePort, portalPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, [CLI, "serve"], {
      stdio: ["ignore", "ignore", "pipe"],
      env: {
        ...process.env,
        LOG_LEVEL: "warn",
        SWITCHBOARD_DATA_DIR: dataDir,
        SWITCHBOARD_RUNTIME_PORT: String(runtimePort),
        SWITCHBOARD_PORTAL_PORT: String(portalPort),
        DATABASE_URL: "",
      },
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolveExit) => child.once("exit", resolveExit));
    try {
      await expect
        .poll(() => answers(`http://127.0.0.1:${String(portalPort)}/healthz`), {
          timeout: 60_000,
          interval: 200,
        })
        .toBe(true);
      expect(await answers(`http://127.0.0.1:${String(runtimePort)}/healthz`)).toBe(true);
      expect(await answers(`http://127.0.0.1:${String(portalPort)}/readyz`)).toBe(true);
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited, stderr).toBe(0);
  }, 90_000);
});
