import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { appendFile, mkdir, open, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { NETWORKS, type BridgeNetwork } from "../bridges/networks.ts";
import { describeExit, trackChild, type ExitStatus } from "../shared/child-processes.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type {
  BridgeDatabaseSecret,
  BridgeDriver,
  BridgeObservation,
  BridgePlacement,
  BridgeSpec,
  BridgeTarget,
} from "./bridge-driver.ts";

/** Time a bridge gets to shut down cleanly after SIGTERM before it is killed. */
const STOP_GRACE_MS = 10_000;
const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;

/** Bridges get a clean environment: none of Switchboard's keys or tokens. */
const BRIDGE_ENV = {
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  LANG: "C.UTF-8",
};

/**
 * What the local homeserver driver shares with its bridges: the tenant's
 * directory and client URL, and ports from the same range and index, so a
 * bridge port is never handed to a homeserver (or another bridge), even
 * while that bridge is stopped.
 */
export interface LocalBridgeHost {
  /** The tenant's homeserver directory and client URL (its index entry, made if absent). */
  homeserverOf(tenantId: TenantId, slug: string): Promise<{ dir: string; clientUrl: string }>;
  /** The bridge's port, allocated once and kept in the index across restarts. */
  bridgePort(tenantId: TenantId, slug: string, network: BridgeNetwork): Promise<number>;
  /** Gives the bridge's port back (after removal). Unknown is fine. */
  releaseBridgePort(tenantId: TenantId, network: BridgeNetwork): Promise<void>;
}

export interface LocalBridgesOptions {
  readonly host: LocalBridgeHost;
  /** Address bridges listen on (the homeserver's bind host). */
  readonly bindHost: string;
  /** provisioning.local.bridgeCommands: executable and leading arguments per network. */
  readonly commands: Readonly<Partial<Record<BridgeNetwork, readonly string[] | undefined>>>;
  readonly logger: Logger;
}

interface Managed {
  readonly child: ChildProcess;
  /** Hash of config + registration the process was started with. */
  readonly filesHash: string;
  /** Set once the process is gone. */
  exit: ExitStatus | undefined;
  readonly exited: Promise<ExitStatus>;
}

const keyOf = (target: BridgeTarget): string => `${target.tenantId}/${target.network}`;

/**
 * The local driver's bridges: one child process per tenant and network,
 * the configured bridge binary run with
 * `-c config.yaml -r registration.yaml --no-update`
 * in <dataDir>/homeservers/<slug>/bridges/<network> (so the tenant's
 * removal takes it along), on SQLite in that directory, listening on a port
 * from the local range. Like Synapse children, bridges die with this process
 * (setpriv --pdeathsig) and the next pass starts them again.
 */
export class LocalBridges implements BridgeDriver {
  readonly #options: LocalBridgesOptions;
  readonly #log: Logger;
  readonly #managed = new Map<string, Managed>();

  constructor(options: LocalBridgesOptions) {
    this.#options = options;
    this.#log = options.logger.child({ module: "local-bridges" });
  }

  async placement(target: BridgeTarget & BridgeDatabaseSecret): Promise<BridgePlacement> {
    this.#command(target.network);
    const dir = await this.#dir(target);
    const { clientUrl } = await this.#options.host.homeserverOf(target.tenantId, target.slug);
    const port = await this.#options.host.bridgePort(target.tenantId, target.slug, target.network);
    const url = `http://${this.#options.bindHost}:${port}`;
    // mautrix-discord (legacy) has no sqlite3-fk-wal driver; the bridgev2 bridges want it.
    const sqlite = target.network === "discord" ? "sqlite3" : "sqlite3-fk-wal";
    return {
      listenHost: this.#options.bindHost,
      listenPort: port,
      appserviceUrl: url,
      homeserverUrl: clientUrl,
      provisioningUrl: url,
      database: { type: sqlite, uri: `file:${join(dir, "bridge.db")}?_txlock=immediate` },
    };
  }

  async ensureBridge(spec: BridgeSpec): Promise<void> {
    const command = this.#command(spec.network);
    const dir = await this.#dir(spec);
    const filesHash = createHash("sha256")
      .update(spec.configYaml)
      .update("\0")
      .update(spec.registrationYaml)
      .digest("hex");
    const key = keyOf(spec);
    const current = this.#managed.get(key);
    if (current !== undefined && current.exit === undefined && current.filesHash === filesHash)
      return;
    if (current !== undefined) await this.#stop(spec, current);
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    await writePrivate(join(dir, "config.yaml"), spec.configYaml);
    await writePrivate(join(dir, "registration.yaml"), spec.registrationYaml);
    this.#managed.set(key, await this.#spawn(spec, command, dir, filesHash));
  }

  async stopBridge(target: BridgeTarget): Promise<void> {
    const current = this.#managed.get(keyOf(target));
    if (current !== undefined) await this.#stop(target, current);
  }

  async removeBridge(target: BridgeTarget): Promise<void> {
    await this.stopBridge(target);
    const { dir } = await this.#options.host.homeserverOf(target.tenantId, target.slug);
    await rm(join(dir, "bridges", target.network), { recursive: true, force: true });
    await this.#options.host.releaseBridgePort(target.tenantId, target.network);
    this.#log.info(
      { tenantId: target.tenantId, network: target.network },
      "bridge removed with its data",
    );
  }

  async inspectBridge(target: BridgeTarget): Promise<BridgeObservation> {
    const current = this.#managed.get(keyOf(target));
    if (current?.exit === undefined && current !== undefined) return { state: "running" };
    if (current?.exit !== undefined) return { state: "exited", detail: describeExit(current.exit) };
    const { dir } = await this.#options.host.homeserverOf(target.tenantId, target.slug);
    return existsSync(join(dir, "bridges", target.network, "config.yaml"))
      ? { state: "stopped" }
      : { state: "absent" };
  }

  /** Stops every bridge process of the tenant (its homeserver is being removed). */
  async stopTenant(tenantId: TenantId): Promise<void> {
    await Promise.all(
      [...this.#managed.entries()]
        .filter(([key]) => key.startsWith(`${tenantId}/`))
        .map(async ([key, managed]) => {
          this.#managed.delete(key);
          await this.#terminate(managed);
        }),
    );
  }

  /** Stops every bridge this driver started (their data and ports stay). */
  async close(): Promise<void> {
    const all = [...this.#managed.values()];
    // Forgotten first: their ends are expected, not reported.
    this.#managed.clear();
    await Promise.all(all.map((managed) => this.#terminate(managed)));
  }

  #command(network: BridgeNetwork): readonly string[] {
    const command = this.#options.commands[network];
    if (command === undefined || command.length === 0)
      throw badRequest(
        `${NETWORKS[network].bridgeName} is not installed here: set provisioning.local.bridgeCommands.${network} (or use the docker driver)`,
      );
    return command;
  }

  async #dir(target: BridgeTarget): Promise<string> {
    const { dir } = await this.#options.host.homeserverOf(target.tenantId, target.slug);
    return join(dir, "bridges", target.network);
  }

  async #spawn(
    target: BridgeTarget,
    command: readonly string[],
    dir: string,
    filesHash: string,
  ): Promise<Managed> {
    const logPath = join(dir, "bridge.log");
    await appendFile(logPath, `--- switchboard: starting at ${new Date().toISOString()} ---\n`, {
      mode: PRIVATE_FILE_MODE,
    });
    const log = await open(logPath, "a");
    let child: ChildProcess;
    let exited: Promise<ExitStatus>;
    let spawned: Promise<true | ExitStatus>;
    try {
      child = spawn(
        "setpriv",
        [
          "--pdeathsig",
          "KILL",
          "--",
          ...command,
          "-c",
          join(dir, "config.yaml"),
          "-r",
          join(dir, "registration.yaml"),
          // The rendered config is complete (config-render.ts): the bridge must not rewrite it.
          "--no-update",
        ],
        { cwd: dir, stdio: ["ignore", log.fd, log.fd], env: { ...BRIDGE_ENV, HOME: dir } },
      );
      // Listened for before any await: "spawn" and "error" come on the next tick.
      const started = child;
      exited = trackChild(started);
      spawned = Promise.race([
        new Promise<true>((resolveSpawn) => {
          started.once("spawn", () => {
            resolveSpawn(true);
          });
        }),
        exited,
      ]);
    } finally {
      // The child holds its own copy of the descriptor.
      await log.close();
    }
    const managed: Managed = { child, filesHash, exit: undefined, exited };
    void exited.then((status) => {
      managed.exit = status;
      if (this.#managed.get(keyOf(target)) === managed)
        this.#log.warn(
          { tenantId: target.tenantId, network: target.network, exit: describeExit(status) },
          "bridge process ended",
        );
    });
    const outcome = await spawned;
    if (outcome !== true)
      throw new AppError(
        "unavailable",
        `${NETWORKS[target.network].bridgeName} ${describeExit(outcome)}`,
      );
    this.#log.info(
      { tenantId: target.tenantId, network: target.network, pid: child.pid },
      "bridge started",
    );
    return managed;
  }

  async #stop(target: BridgeTarget, managed: Managed): Promise<void> {
    if (this.#managed.get(keyOf(target)) === managed) this.#managed.delete(keyOf(target));
    await this.#terminate(managed);
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves once the process is gone. */
  async #terminate(managed: Managed): Promise<void> {
    if (managed.exit !== undefined) return;
    managed.child.kill("SIGTERM");
    const graceOver = new AbortController();
    const timedOut = await Promise.race([
      managed.exited.then(() => false),
      delay(STOP_GRACE_MS, true, { signal: graceOver.signal }).catch(() => false),
    ]);
    graceOver.abort();
    if (timedOut) managed.child.kill("SIGKILL");
    await managed.exited;
  }
}

/** Written to a temporary file and renamed, mode 0600 (the files hold tokens). */
async function writePrivate(file: string, content: string): Promise<void> {
  await writeFile(`${file}.tmp`, content, { mode: PRIVATE_FILE_MODE });
  await rename(`${file}.tmp`, file);
}
