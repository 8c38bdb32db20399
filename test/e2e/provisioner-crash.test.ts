import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { TenantId } from "../../src/shared/ids.ts";
import { isHealthy, loginWithPassword } from "../../src/synapse/admin-api.ts";
import { signUpAndIn } from "../support/portal.ts";
import { createTenant } from "../support/portal-tenants.ts";
import { freePort } from "../support/synapse.ts";
import { startStack, type TestStack } from "../support/stack.ts";

/** A first Synapse start on two busy cores, plus the bootstrap. */
const BRING_UP_TIMEOUT_MS = 150_000;
const EXIT_TIMEOUT_MS = 30_000;

interface StepRow {
  step: string;
  status: string;
  finished_at: Date | null;
}

/** Children of a process (all its threads): the local driver's Synapse processes are direct children. */
function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${String(pid)}/task`).flatMap((tid) =>
      readFileSync(`/proc/${String(pid)}/task/${tid}/children`, "utf8")
        .split(" ")
        .filter((field) => field.trim() !== "")
        .map(Number),
    );
  } catch {
    return [];
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => {
      reject(new Error("provisioner did not exit"));
    }, EXIT_TIMEOUT_MS);
    child.once("exit", () => {
      clearTimeout(deadline);
      resolve();
    });
  });
}

async function adminGet<T>(clientUrl: string, token: string, path: string): Promise<T> {
  const response = await fetch(`${clientUrl}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(response.status, path).toBe(200);
  return (await response.json()) as T;
}

describe("a provisioner killed with SIGKILL during a bring-up", () => {
  let stack: TestStack;
  let configFile: string;
  const children: ChildProcess[] = [];
  /** Synapse processes the killed provisioners had started (pdeathsig should have ended them). */
  const homeserverPids: number[] = [];

  beforeAll(async () => {
    const portRangeStart = await freePort();
    const provisioning = {
      reconcileIntervalMs: 1_000,
      demandPollMs: 200,
      initialBackoffMs: 500,
      maxBackoffMs: 2_000,
      local: { portRangeStart, portRangeEnd: Math.min(65_535, portRangeStart + 50) },
    };
    stack = await startStack({ config: { provisioning } });
    const { config } = stack;
    await mkdir(config.dataDir, { recursive: true });
    configFile = join(config.dataDir, "provisioner.yaml");
    // The same database, data directory, secrets and runtime address (the
    // appservice registration names it) as the in-process app.
    await writeFile(
      configFile,
      stringify({
        dataDir: config.dataDir,
        database: { url: stack.database.url },
        log: { level: "warn" },
        runtime: { port: config.runtime.port },
        defaultPlan: config.defaultPlan,
        secrets: config.secrets,
        models: {
          maxRetries: 0,
          openai: {
            baseUrl: stack.model.url,
            apiKey: config.models.openai.apiKey,
            defaultModel: "test-model",
          },
        },
        provisioning,
      }),
      { mode: 0o600 },
    );
  }, 60_000);

  afterAll(async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    await Promise.all(children.map((child) => exited(child).catch(() => undefined)));
    for (const pid of homeserverPids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    await stack?.stop();
  });

  function spawnProvisioner(): ChildProcess {
    const child = spawn(
      join(process.cwd(), "node_modules/.bin/node"),
      ["src/cli/main.ts", "--config", configFile, "provisioner"],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LOG_LEVEL: "warn" } },
    );
    child.stderr?.resume();
    children.push(child);
    return child;
  }

  async function steps(tenantId: TenantId): Promise<StepRow[]> {
    return (await stack.database
      .knex("provisioning_steps")
      .where({ tenant_id: tenantId })
      .orderBy("id")
      .select("step", "status", "finished_at")) as StepRow[];
  }

  /** Polls provisioning_steps tightly and SIGKILLs the provisioner once `step` has started. */
  async function killWhenStarted(child: ChildProcess, tenantId: TenantId, step: string) {
    const deadline = performance.now() + BRING_UP_TIMEOUT_MS;
    for (;;) {
      const started = await stack.database
        .knex("provisioning_steps")
        .where({ tenant_id: tenantId, step })
        .first("id");
      if (started !== undefined) break;
      if (child.exitCode !== null) throw new Error("the provisioner exited by itself");
      if (performance.now() > deadline) throw new Error(`step ${step} never started`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const homeservers = childPids(child.pid as number);
    homeserverPids.push(...homeservers);
    child.kill("SIGKILL");
    await exited(child);
    return homeservers;
  }

  it.each(["ensure", "health", "bootstrap"])(
    "killed once `%s` has started, the next provisioner finishes the tenant exactly once",
    async (killStep) => {
      const slug = `crash-${killStep}`;
      const portal = await stack.app.portal.app();
      const owner = await signUpAndIn(portal, stack.outboxDir, `owner@${slug}.test`);
      const created = await createTenant(owner, slug);
      const tenantId = created.id as TenantId;
      expect(created.status).toBe("provisioning");

      const orphans = await killWhenStarted(spawnProvisioner(), tenantId, killStep);
      // Past `ensure` the killed provisioner had a Synapse child; pdeathsig takes it down too.
      if (killStep !== "ensure") expect(orphans.length).toBeGreaterThan(0);
      await expect
        .poll(() => orphans.filter(isAlive), { timeout: EXIT_TIMEOUT_MS, interval: 100 })
        .toEqual([]);
      const interrupted = await steps(tenantId);
      // The killed attempt left its step `started`, never finished.
      expect(interrupted.at(-1)).toMatchObject({
        step: killStep,
        status: "started",
        finished_at: null,
      });
      expect(
        (await stack.app.tenantRepository.findById(stack.database.knex, tenantId))?.status,
      ).toBe("provisioning");

      const second = spawnProvisioner();
      await expect
        .poll(
          async () =>
            (await stack.app.tenantRepository.findById(stack.database.knex, tenantId))?.status,
          { timeout: BRING_UP_TIMEOUT_MS, interval: 250 },
        )
        .toBe("active");

      const homeserver = await stack.app.tenantRepository.findHomeserver(
        stack.database.knex,
        tenantId,
      );
      const clientUrl = homeserver?.clientUrl ?? "";
      expect(clientUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(await isHealthy(clientUrl)).toBe(true);

      const record = (await stack.database
        .knex("provisioning")
        .where({ tenant_id: tenantId })
        .first()) as { admin_password_encrypted: string; management_room_id: string };
      const session = await loginWithPassword(
        clientUrl,
        "admin",
        stack.app.cipher.decrypt(record.admin_password_encrypted),
      );
      expect(session.userId).toBe(`@admin:${slug}.localhost`);

      // Exactly one admin account, one management room, one demo agent.
      const { users } = await adminGet<{ users: { name: string; admin: boolean | number }[] }>(
        clientUrl,
        session.accessToken,
        "/_synapse/admin/v2/users?guests=false&limit=100",
      );
      expect(users.filter((user) => Boolean(user.admin)).map((user) => user.name)).toEqual([
        session.userId,
      ]);
      const { rooms } = await adminGet<{ rooms: { room_id: string; name: string | null }[] }>(
        clientUrl,
        session.accessToken,
        "/_synapse/admin/v1/rooms?limit=100",
      );
      expect(
        rooms.filter((room) => room.name === "Switchboard").map((room) => room.room_id),
      ).toEqual([record.management_room_id]);
      const botRooms = await stack.database
        .knex("bot_rooms")
        .where({ tenant_id: tenantId })
        .pluck("room_id");
      expect(botRooms).toEqual([record.management_room_id]);
      const admins = await stack.database
        .knex("tenant_admins")
        .where({ tenant_id: tenantId, user_id: session.userId })
        .pluck("user_id");
      expect(admins).toHaveLength(1);
      const agents = await stack.app.agents.list(tenantId);
      expect(agents.map((agent) => agent.name)).toEqual(["ada"]);

      // The steps table shows the interrupted attempt, then the completing one.
      const all = await steps(tenantId);
      expect(all.slice(0, interrupted.length)).toEqual(interrupted);
      const later = all.slice(interrupted.length);
      expect(later.filter((row) => row.status === "done").map((row) => row.step)).toEqual(
        expect.arrayContaining([killStep, "health", "bootstrap", "mark-provisioned"]),
      );
      expect(later.every((row) => row.status === "done")).toBe(true);

      // A graceful stop takes its homeserver down with it.
      second.kill("SIGTERM");
      await exited(second);
      await expect.poll(() => isHealthy(clientUrl), { timeout: EXIT_TIMEOUT_MS }).toBe(false);
    },
    BRING_UP_TIMEOUT_MS * 2 + 60_000,
  );
});
