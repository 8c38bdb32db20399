import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError } from "../../src/shared/errors.ts";
import { createLogger } from "../../src/shared/logger.ts";
import {
  isHealthy,
  loginWithPassword,
  registerWithSharedSecret,
  whoAmI,
} from "../../src/synapse/admin-api.ts";
import { SynapseProcess } from "../../src/synapse/homeserver-process.ts";
import { TEST_POSTGRES_URL } from "../support/database.ts";
import {
  freePort,
  startTestHomeserver,
  SYNAPSE_CHROOT_DIR,
  type TestHomeserver,
} from "../support/synapse.ts";

const REPO_DIR = fileURLToPath(new URL("../..", import.meta.url));
/** Node 24 from the dev dependency: it runs the .ts sources directly. */
const NODE_24 = join(REPO_DIR, "node_modules/.bin/node");
const WAIT_TIMEOUT_MS = 20_000;

/** Polls `check` until it returns a value other than undefined, or fails after the timeout. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function matrix(
  hs: TestHomeserver,
  accessToken: string,
  method: "GET" | "POST" | "PUT",
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const response = await fetch(`${hs.clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (!response.ok)
    throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function sendText(
  hs: TestHomeserver,
  accessToken: string,
  roomId: string,
  text: string,
): Promise<string> {
  const txnId = randomBytes(8).toString("hex");
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txnId}`;
  const sent = await matrix(hs, accessToken, "PUT", path, { msgtype: "m.text", body: text });
  return sent.event_id as string;
}

async function recentBodies(
  hs: TestHomeserver,
  accessToken: string,
  roomId: string,
): Promise<string[]> {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`;
  const page = await matrix(hs, accessToken, "GET", path);
  const events = page.chunk as { type: string; content: { body?: string } }[];
  return events
    .filter((event) => event.type === "m.room.message")
    .map((event) => event.content.body ?? "");
}

async function expectAppError(promise: Promise<unknown>, code: string): Promise<AppError> {
  const error: unknown = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe(code);
  return error as AppError;
}

function appserviceRegistration(serverName: string): string {
  return [
    "id: e2e-bridge",
    "url: null",
    "as_token: e2e-as-token-0123456789",
    "hs_token: e2e-hs-token-0123456789",
    "sender_localpart: e2e_bridge_bot",
    "rate_limited: false",
    "namespaces:",
    "  users:",
    "    - exclusive: true",
    `      regex: "@e2e_bridge_.*:${serverName.replaceAll(".", "\\\\.")}"`,
    "",
  ].join("\n");
}

describe("a homeserver on SQLite", () => {
  let hs: TestHomeserver;
  let alice: Awaited<ReturnType<TestHomeserver["registerUser"]>>;
  let roomId: string;

  beforeAll(async () => {
    hs = await startTestHomeserver({ serverName: "e2e-sqlite.test" });
  });
  afterAll(() => hs.stop());

  it("registers with the shared secret, logs in with the password, and exchanges a message", async () => {
    alice = await hs.registerUser("alice", { displayName: "Alice" });
    expect(alice.userId).toBe("@alice:e2e-sqlite.test");

    const session = await loginWithPassword(hs.clientUrl, "alice", alice.password);
    expect(session.userId).toBe(alice.userId);
    expect(session.deviceId).not.toBe(alice.deviceId);

    const created = await matrix(hs, session.accessToken, "POST", "/_matrix/client/v3/createRoom", {
      name: "e2e",
      preset: "private_chat",
    });
    roomId = created.room_id as string;
    await sendText(hs, session.accessToken, roomId, "hello from the e2e test");
    expect(await recentBodies(hs, alice.accessToken, roomId)).toContain("hello from the e2e test");
  });

  it("turns registration and login failures into clear errors", async () => {
    await expectAppError(hs.registerUser("alice"), "conflict");
    await expectAppError(
      registerWithSharedSecret(hs.clientUrl, "not-the-secret", {
        localpart: "mallory",
        password: "x",
        admin: true,
      }),
      "forbidden",
    );
    await expectAppError(loginWithPassword(hs.clientUrl, "alice", "wrong password"), "forbidden");
    await expectAppError(whoAmI(hs.clientUrl, "syt_not_a_token"), "unauthorized");
  });

  it("keeps data, keys and sessions across a restart", async () => {
    const keyBefore = await readFile(join(hs.dataDir, "signing.key"), "utf8");
    expect(keyBefore).toMatch(/^ed25519 a_\w+ \S+\n?$/);
    const pidBefore = hs.synapse.pid;

    await hs.restart();

    expect(hs.synapse.pid).not.toBe(pidBefore);
    expect(await readFile(join(hs.dataDir, "signing.key"), "utf8")).toBe(keyBefore);
    expect(await whoAmI(hs.clientUrl, alice.accessToken)).toBe(alice.userId);
    expect(await recentBodies(hs, alice.accessToken, roomId)).toContain("hello from the e2e test");
    for (const secretFile of ["secrets.json", "homeserver.yaml"]) {
      expect((await stat(join(hs.dataDir, secretFile))).mode & 0o777).toBe(0o600);
    }
  });

  it("loads and unloads appservice registrations on restart", async () => {
    const asToken = "e2e-as-token-0123456789";
    await hs.synapse.updateRegistrations({ "bridge.yaml": appserviceRegistration(hs.serverName) });
    await hs.restart();
    expect(await whoAmI(hs.clientUrl, asToken)).toBe(`@e2e_bridge_bot:${hs.serverName}`);

    await hs.synapse.updateRegistrations({});
    await hs.restart();
    await expectAppError(whoAmI(hs.clientUrl, asToken), "unauthorized");
  });

  it("refuses to start on a port that is taken, without spawning anything", async () => {
    const clash = new SynapseProcess(
      { ...hs.synapse.spec, dataDir: join(hs.dataDir, "clash"), serverName: "clash.test" },
      { chrootDir: SYNAPSE_CHROOT_DIR, logger: createLogger({ level: "silent", pretty: false }) },
    );
    await expectAppError(clash.start(), "conflict");
    expect(clash.isRunning).toBe(false);
  });
});

describe("a homeserver that cannot start", () => {
  it("rejects with the last lines of Synapse's log", async () => {
    const broken = { "broken.yaml": "id: broken\nurl: null\n" };
    const error = await expectAppError(
      startTestHomeserver({ appserviceRegistrations: broken }),
      "unavailable",
    );
    expect(error.message).toMatch(/exited with code [1-9]/);
    expect(error.details?.logTail).toEqual(
      expect.arrayContaining([expect.stringMatching(/token/)]),
    );
  });
});

describe("stopping during a start", () => {
  it("stops the homeserver and makes the pending start() reject", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "switchboard-hs-"));
    const synapse = new SynapseProcess(
      {
        serverName: "interrupted.test",
        bindHost: "127.0.0.1",
        port: await freePort(),
        dataDir,
        database: { kind: "sqlite" },
        registrationSharedSecret: "interrupted-shared-secret",
        appserviceRegistrations: {},
      },
      { chrootDir: SYNAPSE_CHROOT_DIR, logger: createLogger({ level: "silent", pretty: false }) },
    );
    try {
      const starting = synapse.start();
      await synapse.stop();
      await expectAppError(starting, "unavailable");
      expect(synapse.isRunning).toBe(false);
      expect(await isHealthy(synapse.clientUrl)).toBe(false);
    } finally {
      await synapse.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe("a homeserver on PostgreSQL", () => {
  let hs: TestHomeserver;
  beforeAll(async () => {
    hs = await startTestHomeserver({ database: "postgres" });
  });
  afterAll(() => hs.stop());

  async function synapseDatabases(): Promise<string[]> {
    const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await client.connect();
    try {
      const result = await client.query<{ datname: string }>(
        "select datname from pg_database where datname like 'sb_synapse_test_%'",
      );
      return result.rows.map((row) => row.datname);
    } finally {
      await client.end();
    }
  }

  it("stores users in its own database, which stop() drops", async () => {
    const bob = await hs.registerUser("bob");
    expect((await loginWithPassword(hs.clientUrl, "bob", bob.password)).userId).toBe(bob.userId);
    const config = await readFile(join(hs.dataDir, "homeserver.yaml"), "utf8");
    const databaseName = /dbname: (sb_synapse_test_\w+)/.exec(config)?.[1];
    expect(databaseName).toBeDefined();
    expect(await synapseDatabases()).toContain(databaseName);

    await hs.stop();
    expect(await synapseDatabases()).not.toContain(databaseName);
  });
});

describe("two homeservers at once", () => {
  it("run side by side, each with its own data, and stop idempotently", async () => {
    const [one, two] = await Promise.all([
      startTestHomeserver({ serverName: "one.test" }),
      startTestHomeserver({ serverName: "two.test" }),
    ]);
    try {
      expect(one.clientUrl).not.toBe(two.clientUrl);
      const [carolOne, carolTwo] = await Promise.all([
        one.registerUser("carol"),
        two.registerUser("carol"),
      ]);
      expect(carolOne.userId).toBe("@carol:one.test");
      expect(carolTwo.userId).toBe("@carol:two.test");
      // Each token is only known to its own homeserver's database.
      await expectAppError(whoAmI(two.clientUrl, carolOne.accessToken), "unauthorized");
      expect(await whoAmI(one.clientUrl, carolOne.accessToken)).toBe(carolOne.userId);
    } finally {
      await Promise.all([one.stop(), one.stop(), two.stop()]);
    }
    await one.stop();
    expect(one.synapse.isRunning).toBe(false);
    expect(await isHealthy(one.clientUrl)).toBe(false);
    expect(await isHealthy(two.clientUrl)).toBe(false);
  });
});

describe("a crashed owner", () => {
  it("takes its homeservers down with it", async () => {
    const port = await freePort();
    const dataDir = await mkdtemp(join(tmpdir(), "switchboard-crash-"));
    const script = `
      import { SynapseProcess } from ${JSON.stringify(join(REPO_DIR, "src/synapse/homeserver-process.ts"))};
      import { createLogger } from ${JSON.stringify(join(REPO_DIR, "src/shared/logger.ts"))};
      const synapse = new SynapseProcess(
        { serverName: "crash.test", bindHost: "127.0.0.1", port: ${port}, dataDir: ${JSON.stringify(dataDir)},
          database: { kind: "sqlite" }, registrationSharedSecret: "crash-test-shared-secret", appserviceRegistrations: {} },
        { chrootDir: ${JSON.stringify(SYNAPSE_CHROOT_DIR)}, logger: createLogger({ level: "silent", pretty: false }) });
      await synapse.start();
      process.stdout.write(JSON.stringify({ pid: synapse.pid }) + "\\n");
      setInterval(() => {}, 60_000);
    `;
    const owner = spawn(NODE_24, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const synapsePid = await new Promise<number>((resolve, reject) => {
        let output = "";
        owner.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString();
          const line = /\{"pid":(\d+)\}/.exec(output);
          if (line?.[1] !== undefined) resolve(Number(line[1]));
        });
        owner.once("exit", (code) => {
          reject(new Error(`owner exited with ${String(code)} before starting Synapse`));
        });
      });
      expect(await isHealthy(`http://127.0.0.1:${port}`)).toBe(true);

      owner.kill("SIGKILL");

      // Gone, or a zombie waiting for init to reap it: either way no longer running.
      await waitFor("Synapse to die with its owner", async () => {
        const status = await readFile(`/proc/${synapsePid}/status`, "utf8").catch(
          () => "State:\tX (gone)",
        );
        return /^State:\s+[ZX]/m.test(status) ? true : undefined;
      });
      expect(await isHealthy(`http://127.0.0.1:${port}`)).toBe(false);
    } finally {
      owner.kill("SIGKILL");
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
