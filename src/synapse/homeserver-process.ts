import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { appendFile, mkdir, open } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { describeExit, trackChild, type ExitStatus } from "../shared/child-processes.ts";
import { AppError, describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { isHealthy } from "./admin-api.ts";
import {
  CHROOT_MOUNT_POINT,
  clientUrlFor,
  DATA_DIR_LAYOUT,
  type HomeserverSpec,
} from "./homeserver-config.ts";
import {
  fileSize,
  prepareDataDir,
  readLogTail,
  writeRegistrations,
} from "./homeserver-data-dir.ts";

/** Where synapse/install.sh puts the chroot unless told otherwise. */
export const DEFAULT_SYNAPSE_CHROOT_DIR = "/var/cache/switchboard/synapse-chroot-v1";
/** A first start on PostgreSQL creates the whole schema; two busy cores need a while. */
export const START_TIMEOUT_MS = 120_000;
/** Time Synapse gets to shut down cleanly after SIGTERM before it is killed. */
export const STOP_GRACE_MS = 15_000;
const HEALTH_POLL_INTERVAL_MS = 100;
const LOG_TAIL_LINES = 40;
const DEFAULT_TEMPLATE_DIR = fileURLToPath(new URL("../../synapse/", import.meta.url));

/**
 * Runs Synapse inside the chroot with the data directory bind-mounted at
 * CHROOT_MOUNT_POINT, in a private mount namespace: the mount vanishes with
 * the process and homeservers running at the same time each see their own
 * directory at the same path. `exec` all the way down makes the spawned pid
 * Synapse itself, so signals reach it. $1 = data dir, $2 = chroot.
 */
const LAUNCH_SCRIPT =
  `mount --bind "$1" "$2${CHROOT_MOUNT_POINT}" && ` +
  `exec chroot "$2" python3 -m synapse.app.homeserver --config-path ${CHROOT_MOUNT_POINT}/${DATA_DIR_LAYOUT.config}`;

/** Synapse gets a clean environment: none of Switchboard's keys or tokens. */
const SYNAPSE_ENV = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  LANG: "C.UTF-8",
  PYTHONUNBUFFERED: "1",
};

interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<ExitStatus>;
}

/** Throws a conflict AppError if something already listens on host:port. */
async function assertPortFree(host: string, port: number): Promise<void> {
  const server = createServer();
  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once("error", reject);
      server.listen({ host, port, exclusive: true }, resolveListen);
    });
  } catch (error) {
    throw new AppError(
      "conflict",
      `cannot start homeserver: ${host}:${port} is not free (${describeError(error)})`,
    );
  } finally {
    await new Promise<void>((resolveClose) =>
      server.close(() => {
        resolveClose();
      }),
    );
  }
}

export interface SynapseProcessOptions {
  /** The chroot installed by synapse/install.sh. */
  readonly chrootDir: string;
  readonly logger: Logger;
  /** Directory with homeserver.yaml and log.yaml templates; defaults to <repo>/synapse. */
  readonly templateDir?: string;
  readonly startTimeoutMs?: number;
  readonly stopGraceMs?: number;
}

/**
 * One tenant homeserver: a Synapse process whose config, keys, database (or
 * PostgreSQL connection), media and log live in spec.dataDir. Needs root
 * (mount namespaces, chroot). start() rejects while another start is under
 * way or Synapse runs; stop() is safe at any time. One instance per dataDir.
 */
export class SynapseProcess {
  readonly spec: HomeserverSpec;
  readonly #chrootDir: string;
  readonly #templateDir: string;
  readonly #logger: Logger;
  readonly #startTimeoutMs: number;
  readonly #stopGraceMs: number;
  #registrations: Readonly<Record<string, string>>;
  #running: Running | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(spec: HomeserverSpec, options: SynapseProcessOptions) {
    this.spec = { ...spec, dataDir: resolve(spec.dataDir) };
    this.#registrations = { ...spec.appserviceRegistrations };
    this.#chrootDir = resolve(options.chrootDir);
    this.#templateDir = options.templateDir ?? DEFAULT_TEMPLATE_DIR;
    this.#logger = options.logger.child({ module: "synapse", serverName: spec.serverName });
    this.#startTimeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS;
    this.#stopGraceMs = options.stopGraceMs ?? STOP_GRACE_MS;
  }

  /** Base URL of the client API, without a trailing slash. */
  get clientUrl(): string {
    return clientUrlFor(this.spec);
  }

  /** Synapse's stdout and stderr, appended across starts. */
  get logPath(): string {
    return join(this.spec.dataDir, DATA_DIR_LAYOUT.log);
  }

  get isRunning(): boolean {
    return this.#running !== undefined;
  }

  /** The Synapse (python) process id while running. */
  get pid(): number | undefined {
    return this.#running?.child.pid;
  }

  /**
   * Renders the config (generating secrets on first start; Synapse generates
   * its signing key), spawns Synapse and resolves once GET /health answers
   * 200. Rejects with the last log lines if Synapse exits or is not healthy
   * within the start timeout (the process is then killed). Errors: conflict
   * if already running or the port is taken, unavailable if the chroot is
   * missing or Synapse fails to start.
   */
  start(): Promise<void> {
    if (this.#running !== undefined || this.#starting !== undefined) {
      return Promise.reject(
        new AppError("conflict", `homeserver ${this.spec.serverName} is already running`),
      );
    }
    this.#starting = this.#start().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    const startedAt = performance.now();
    if (process.getuid?.() !== 0) {
      throw new AppError("unavailable", "running Synapse needs root (mount namespace and chroot)");
    }
    if (!existsSync(join(this.#chrootDir, "usr/bin/python3"))) {
      throw new AppError(
        "unavailable",
        `no Synapse chroot at ${this.#chrootDir}: run synapse/install.sh`,
      );
    }
    await prepareDataDir(this.spec, this.#registrations, this.#templateDir);
    await assertPortFree(this.spec.bindHost, this.spec.port);
    await mkdir(join(this.#chrootDir, CHROOT_MOUNT_POINT), { recursive: true });

    const logOffset = await fileSize(this.logPath);
    await appendFile(
      this.logPath,
      `--- switchboard: starting Synapse at ${new Date().toISOString()} ---\n`,
    );
    const running = await this.#spawn();
    this.#running = running;

    try {
      await this.#waitUntilHealthy(running);
    } catch (error) {
      running.child.kill("SIGKILL");
      await running.exited;
      this.#running = undefined;
      const tail = await readLogTail(this.logPath, logOffset, LOG_TAIL_LINES);
      const reason = error instanceof AppError ? error.message : describeError(error);
      throw new AppError(
        "unavailable",
        `Synapse for ${this.spec.serverName} ${reason}; last lines of ${this.logPath}:\n${tail.join("\n")}`,
        { details: { serverName: this.spec.serverName, logTail: tail } },
      );
    }
    this.#logger.info(
      {
        pid: running.child.pid,
        clientUrl: this.clientUrl,
        startMs: Math.round(performance.now() - startedAt),
      },
      "homeserver started",
    );
  }

  async #spawn(): Promise<Running> {
    const log = await open(this.logPath, "a");
    let child: ChildProcess;
    let exited: Promise<ExitStatus>;
    try {
      child = spawn(
        "setpriv",
        [
          "--pdeathsig",
          "KILL",
          "unshare",
          "--mount",
          "sh",
          "-c",
          LAUNCH_SCRIPT,
          "sh",
          this.spec.dataDir,
          this.#chrootDir,
        ],
        { stdio: ["ignore", log.fd, log.fd], env: SYNAPSE_ENV },
      );
      // Before any await: "error" and "exit" may come on the next tick.
      exited = trackChild(child);
    } finally {
      // The child holds its own copy of the descriptor.
      await log.close();
    }
    void exited.then((status) => {
      if (this.#running?.child !== child) return;
      this.#running = undefined;
      if (this.#stopping === undefined && this.#starting === undefined) {
        this.#logger.error(
          { exit: describeExit(status), log: this.logPath },
          "homeserver exited unexpectedly",
        );
      }
    });
    return { child, exited };
  }

  async #waitUntilHealthy(running: Running): Promise<void> {
    const deadline = performance.now() + this.#startTimeoutMs;
    let exit: ExitStatus | undefined;
    void running.exited.then((status) => {
      exit = status;
    });
    // A function call, so that the check after each await is not narrowed away.
    const failIfExited = (): void => {
      if (exit !== undefined) throw new AppError("unavailable", describeExit(exit));
    };
    while (performance.now() < deadline) {
      failIfExited();
      const healthy = await isHealthy(this.clientUrl);
      // A health answer in the instant before an exit does not count.
      failIfExited();
      if (healthy) return;
      await Promise.race([delay(HEALTH_POLL_INTERVAL_MS), running.exited]);
    }
    throw new AppError("unavailable", `was not healthy within ${this.#startTimeoutMs} ms`);
  }

  /**
   * SIGTERM, then SIGKILL after the grace period; resolves once the process
   * is gone. Idempotent: resolves at once when not running, and concurrent
   * calls share one shutdown. During a start it waits until Synapse has been
   * spawned (or the start failed), then stops it: the pending start() then
   * rejects.
   */
  stop(): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#running === undefined && this.#starting === undefined) return Promise.resolve();
    this.#stopping = this.#stopWhenSpawned().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stopWhenSpawned(): Promise<void> {
    while (this.#running === undefined && this.#starting !== undefined) {
      await Promise.race([this.#starting.catch(() => undefined), delay(HEALTH_POLL_INTERVAL_MS)]);
    }
    const running = this.#running;
    if (running !== undefined) await this.#stop(running);
  }

  async #stop(running: Running): Promise<void> {
    const stoppedAt = performance.now();
    running.child.kill("SIGTERM");
    const graceOver = new AbortController();
    const killedAfterGrace = await Promise.race([
      running.exited.then(() => false),
      delay(this.#stopGraceMs, true, { signal: graceOver.signal }).catch(() => false),
    ]);
    graceOver.abort();
    if (killedAfterGrace) {
      this.#logger.warn({ graceMs: this.#stopGraceMs }, "homeserver ignored SIGTERM; killing it");
      running.child.kill("SIGKILL");
    }
    await running.exited;
    this.#logger.info({ stopMs: Math.round(performance.now() - stoppedAt) }, "homeserver stopped");
  }

  /** Stops (if running) and starts again, e.g. to load changed appservice registrations. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /**
   * Replaces the appservice registrations: rewrites the files in the data
   * directory now; the config lists them on the next start. Synapse cannot
   * load registrations while running, so the caller restarts it.
   */
  async updateRegistrations(registrations: Readonly<Record<string, string>>): Promise<void> {
    const copy = { ...registrations };
    await writeRegistrations(this.spec.dataDir, copy);
    this.#registrations = copy;
  }
}
