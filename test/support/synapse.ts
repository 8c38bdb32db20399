import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { registerWithSharedSecret, type MatrixSession } from "../../src/synapse/admin-api.ts";
import type { HomeserverDatabase } from "../../src/synapse/homeserver-config.ts";
import {
  DEFAULT_SYNAPSE_CHROOT_DIR,
  SynapseProcess,
} from "../../src/synapse/homeserver-process.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { TEST_POSTGRES_URL } from "./database.ts";

/**
 * A real Synapse for one test file. Every homeserver gets its own free port,
 * temporary data directory and (optionally) its own PostgreSQL database, so
 * test files running in parallel never share state. Synapse processes die
 * with the test process even when it crashes (see SynapseProcess).
 */

/** The chroot synapse/install.sh built (scripts/setup.sh runs it before tests). */
export const SYNAPSE_CHROOT_DIR = process.env.SWITCHBOARD_SYNAPSE_DIR ?? DEFAULT_SYNAPSE_CHROOT_DIR;
const BIND_HOST = "127.0.0.1";

export interface TestHomeserverOptions {
  /** Defaults to a unique name per homeserver, e.g. "hs-1a2b3c.test". */
  readonly serverName?: string;
  /** SQLite in the data directory (default), or a fresh database on the test PostgreSQL server. */
  readonly database?: "sqlite" | "postgres";
  /** Appservice registrations by file name ("switchboard.yaml" -> YAML text). */
  readonly appserviceRegistrations?: Readonly<Record<string, string>>;
}

export interface TestUser extends MatrixSession {
  readonly password: string;
}

export interface RegisterUserOptions {
  /** Defaults to "password-<localpart>". */
  readonly password?: string;
  readonly admin?: boolean;
  readonly displayName?: string;
}

export interface TestHomeserver {
  /** Base URL of the client API, without a trailing slash. */
  readonly clientUrl: string;
  readonly serverName: string;
  readonly sharedSecret: string;
  readonly dataDir: string;
  /** The underlying process, e.g. for updateRegistrations() followed by restart(). */
  readonly synapse: SynapseProcess;
  /** Registers a user with the shared secret; the returned session is logged in. */
  registerUser(localpart: string, options?: RegisterUserOptions): Promise<TestUser>;
  restart(): Promise<void>;
  /** Stops Synapse and deletes its data directory and database. Idempotent. */
  stop(): Promise<void>;
}

/** A TCP port that was free a moment ago on the loopback address. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: BIND_HOST, port: 0 }, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
  if (address === null || typeof address === "string") throw new Error("no port assigned");
  return address.port;
}

async function onPostgresServer(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A fresh database as Synapse requires it (C collation, UTF8), and how to drop it. */
async function createSynapseDatabase(): Promise<{
  database: HomeserverDatabase;
  drop: () => Promise<void>;
}> {
  const name = `sb_synapse_test_${randomBytes(6).toString("hex")}`;
  await onPostgresServer(
    `create database ${name} encoding 'UTF8' lc_collate 'C' lc_ctype 'C' template template0`,
  );
  const url = new URL(TEST_POSTGRES_URL);
  const password = decodeURIComponent(url.password);
  return {
    database: {
      kind: "postgres",
      host: url.hostname,
      port: url.port === "" ? 5432 : Number(url.port),
      user: decodeURIComponent(url.username),
      ...(password === "" ? {} : { password }),
      database: name,
    },
    drop: () => onPostgresServer(`drop database if exists ${name} with (force)`),
  };
}

/** Starts a homeserver; the caller must call stop() (e.g. in afterAll). */
export async function startTestHomeserver(
  options: TestHomeserverOptions = {},
): Promise<TestHomeserver> {
  const serverName = options.serverName ?? `hs-${randomBytes(3).toString("hex")}.test`;
  const sharedSecret = randomBytes(24).toString("base64url");
  const dataDir = await mkdtemp(join(tmpdir(), "switchboard-hs-"));
  const postgres = options.database === "postgres" ? await createSynapseDatabase() : undefined;
  const cleanUp = async (): Promise<void> => {
    await postgres?.drop();
    await rm(dataDir, { recursive: true, force: true });
  };

  const synapse = new SynapseProcess(
    {
      serverName,
      bindHost: BIND_HOST,
      port: await freePort(),
      dataDir,
      database: postgres?.database ?? { kind: "sqlite" },
      registrationSharedSecret: sharedSecret,
      appserviceRegistrations: options.appserviceRegistrations ?? {},
    },
    {
      chrootDir: SYNAPSE_CHROOT_DIR,
      logger: createLogger({ level: process.env.TEST_LOG_LEVEL ?? "warn", pretty: false }),
    },
  );
  try {
    await synapse.start();
  } catch (error) {
    await cleanUp();
    throw error;
  }

  let stopped: Promise<void> | undefined;
  return {
    clientUrl: synapse.clientUrl,
    serverName,
    sharedSecret,
    dataDir,
    synapse,
    async registerUser(localpart, registerOptions = {}) {
      const password = registerOptions.password ?? `password-${localpart}`;
      const session = await registerWithSharedSecret(synapse.clientUrl, sharedSecret, {
        localpart,
        password,
        admin: registerOptions.admin ?? false,
        ...(registerOptions.displayName === undefined
          ? {}
          : { displayName: registerOptions.displayName }),
      });
      return { ...session, password };
    },
    restart: () => synapse.restart(),
    stop() {
      stopped ??= synapse.stop().then(cleanUp);
      return stopped;
    },
  };
}
