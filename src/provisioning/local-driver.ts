import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { BridgeNetwork } from "../bridges/networks.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { isHealthy } from "../synapse/admin-api.ts";
import { clientUrlFor, type HomeserverSpec as SynapseSpec } from "../synapse/homeserver-config.ts";
import { SynapseProcess } from "../synapse/homeserver-process.ts";
import type {
  HomeserverDriver,
  HomeserverEndpoint,
  HomeserverObservation,
  HomeserverSpec,
} from "./driver.ts";
import { LocalBridges } from "./local-bridges.ts";

/** Which tenant has which slug and port: kept across restarts so a homeserver keeps its address. */
const INDEX_FILE = "provisioned.json";
const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

export interface LocalDriverOptions {
  /** Switchboard's data directory; homeservers live under <dataDir>/homeservers/<slug>. */
  readonly dataDir: string;
  readonly chrootDir: string;
  readonly bindHost: string;
  readonly portRangeStart: number;
  readonly portRangeEnd: number;
  readonly logger: Logger;
  readonly templateDir?: string;
  readonly startTimeoutMs?: number;
  /** provisioning.local.bridgeCommands: how to run each bridge here. */
  readonly bridgeCommands?: Readonly<Partial<Record<BridgeNetwork, readonly string[] | undefined>>>;
}

interface IndexEntry {
  readonly slug: string;
  readonly port: number;
  /** The tenant's bridges' ports, from the same range. */
  readonly bridges?: Readonly<Partial<Record<BridgeNetwork, number>>>;
}

interface Managed {
  readonly process: SynapseProcess;
  /** Hash of the rendered spec: a change (registration, secret) needs a restart. */
  readonly specHash: string;
}

/**
 * The `local` driver: one Synapse child process per tenant (SynapseProcess,
 * in the project's chroot), its data directory under
 * <dataDir>/homeservers/<slug> with an SQLite database, and a port from the
 * configured range that is recorded in <dataDir>/homeservers/provisioned.json
 * so restarts keep it. Synapse processes die with this Node process
 * (pdeathsig): after a restart of the provisioner the next pass starts them
 * again. Resource limits from the plan are not enforced here (no cgroups
 * for child processes); the docker driver enforces them. The tenant's
 * bridges (local-bridges.ts) live in its directory and take ports from the
 * same index.
 */
export class LocalDriver implements HomeserverDriver {
  readonly name = "local";
  readonly bridges: LocalBridges;
  readonly #options: LocalDriverOptions;
  readonly #log: Logger;
  readonly #managed = new Map<TenantId, Managed>();
  #index: Record<string, IndexEntry> | undefined;

  constructor(options: LocalDriverOptions) {
    this.#options = options;
    this.#log = options.logger.child({ module: "local-driver" });
    this.bridges = new LocalBridges({
      bindHost: options.bindHost,
      commands: options.bridgeCommands ?? {},
      logger: options.logger,
      host: {
        homeserverOf: async (tenantId, slug) => {
          const entry = await this.#entryFor(tenantId, slug);
          return {
            dir: join(this.#root, entry.slug),
            clientUrl: clientUrlFor({ bindHost: options.bindHost, port: entry.port }),
          };
        },
        bridgePort: (tenantId, slug, network) => this.#bridgePort(tenantId, slug, network),
        releaseBridgePort: (tenantId, network) => this.#releaseBridgePort(tenantId, network),
      },
    });
  }

  get #root(): string {
    return join(this.#options.dataDir, "homeservers");
  }

  async ensure(spec: HomeserverSpec): Promise<HomeserverEndpoint> {
    if (!SLUG.test(spec.slug)) throw badRequest(`slug "${spec.slug}" cannot name a directory`);
    if (spec.database !== "sqlite")
      throw badRequest(
        `the local driver runs homeservers on SQLite only (asked for ${spec.database})`,
      );
    const entry = await this.#entryFor(spec.tenantId, spec.slug);
    const synapseSpec: SynapseSpec = {
      serverName: spec.serverName,
      bindHost: this.#options.bindHost,
      port: entry.port,
      dataDir: join(this.#root, entry.slug),
      ...(spec.publicBaseUrl === undefined ? {} : { publicBaseUrl: spec.publicBaseUrl }),
      database: { kind: "sqlite" },
      registrationSharedSecret: spec.registrationSharedSecret,
      appserviceRegistrations: spec.appserviceRegistrations,
    };
    const specHash = createHash("sha256").update(JSON.stringify(synapseSpec)).digest("hex");
    const current = this.#managed.get(spec.tenantId);
    if (current?.specHash === specHash && current.process.isRunning)
      return { clientUrl: current.process.clientUrl };
    if (current !== undefined) {
      // Changed spec, or the process died: a clean start with the new config.
      await current.process.stop();
      this.#managed.delete(spec.tenantId);
    }
    const process = new SynapseProcess(synapseSpec, {
      chrootDir: this.#options.chrootDir,
      logger: this.#log.child({ tenantId: spec.tenantId }),
      ...(this.#options.templateDir === undefined
        ? {}
        : { templateDir: this.#options.templateDir }),
      ...(this.#options.startTimeoutMs === undefined
        ? {}
        : { startTimeoutMs: this.#options.startTimeoutMs }),
    });
    this.#managed.set(spec.tenantId, { process, specHash });
    await process.start();
    return { clientUrl: process.clientUrl };
  }

  async stop(tenantId: TenantId): Promise<void> {
    await this.#managed.get(tenantId)?.process.stop();
  }

  async remove(tenantId: TenantId): Promise<void> {
    await this.bridges.stopTenant(tenantId);
    await this.stop(tenantId);
    this.#managed.delete(tenantId);
    const index = await this.#readIndex();
    const entry = index[tenantId];
    if (entry === undefined) return;
    await rm(join(this.#root, entry.slug), { recursive: true, force: true });
    await this.#writeIndex(
      Object.fromEntries(Object.entries(index).filter(([id]) => id !== tenantId)),
    );
    this.#log.info({ tenantId, slug: entry.slug }, "homeserver removed with its data");
  }

  async inspect(tenantId: TenantId): Promise<HomeserverObservation> {
    const entry = (await this.#readIndex())[tenantId];
    if (entry === undefined) return { state: "absent" };
    const clientUrl = clientUrlFor({ bindHost: this.#options.bindHost, port: entry.port });
    const details = { port: entry.port, slug: entry.slug };
    const process = this.#managed.get(tenantId)?.process;
    if (process === undefined || !process.isRunning) {
      const exists = existsSync(join(this.#root, entry.slug));
      return exists ? { state: "stopped", clientUrl, details } : { state: "absent" };
    }
    const withPid = { ...details, ...(process.pid === undefined ? {} : { pid: process.pid }) };
    if (await isHealthy(clientUrl)) return { state: "running", clientUrl, details: withPid };
    return {
      state: "unhealthy",
      clientUrl,
      detail: "GET /health does not answer 200",
      details: withPid,
    };
  }

  async listTenants(): Promise<TenantId[]> {
    return Object.keys(await this.#readIndex()) as TenantId[];
  }

  /** Stops every homeserver this driver started (their data and ports stay). */
  async close(): Promise<void> {
    await this.bridges.close();
    await Promise.all([...this.#managed.values()].map((managed) => managed.process.stop()));
    this.#managed.clear();
  }

  /** The tenant's slug and port; a new tenant gets the first free port in the range. */
  async #entryFor(tenantId: TenantId, slug: string): Promise<IndexEntry> {
    const index = await this.#readIndex();
    const existing = index[tenantId];
    if (existing !== undefined) return existing;
    const entry = { slug, port: await this.#freePort(index) };
    await this.#writeIndex({ ...index, [tenantId]: entry });
    return entry;
  }

  async #bridgePort(tenantId: TenantId, slug: string, network: BridgeNetwork): Promise<number> {
    const entry = await this.#entryFor(tenantId, slug);
    const existing = entry.bridges?.[network];
    if (existing !== undefined) return existing;
    const index = await this.#readIndex();
    const port = await this.#freePort(index);
    const bridges = { ...entry.bridges, [network]: port };
    await this.#writeIndex({ ...index, [tenantId]: { ...entry, bridges } });
    return port;
  }

  async #releaseBridgePort(tenantId: TenantId, network: BridgeNetwork): Promise<void> {
    const index = await this.#readIndex();
    const entry = index[tenantId];
    if (entry?.bridges?.[network] === undefined) return;
    const bridges = Object.fromEntries(
      Object.entries(entry.bridges).filter(([name]) => name !== network),
    );
    await this.#writeIndex({ ...index, [tenantId]: { ...entry, bridges } });
  }

  /** The first port of the range that no homeserver or bridge holds and nothing listens on. */
  async #freePort(index: Record<string, IndexEntry>): Promise<number> {
    const taken = new Set(
      Object.values(index).flatMap((entry) => [entry.port, ...Object.values(entry.bridges ?? {})]),
    );
    for (let port = this.#options.portRangeStart; port <= this.#options.portRangeEnd; port++) {
      if (taken.has(port) || !(await portIsFree(this.#options.bindHost, port))) continue;
      return port;
    }
    throw new AppError(
      "unavailable",
      `no free port left in provisioning.local ${this.#options.portRangeStart}-${this.#options.portRangeEnd}`,
    );
  }

  async #readIndex(): Promise<Record<string, IndexEntry>> {
    if (this.#index !== undefined) return this.#index;
    try {
      this.#index = JSON.parse(await readFile(join(this.#root, INDEX_FILE), "utf8")) as Record<
        string,
        IndexEntry
      >;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      this.#index = {};
    }
    return this.#index;
  }

  /** Written to a temporary file and renamed: a crash leaves the old or the new index, never half. */
  async #writeIndex(index: Record<string, IndexEntry>): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    const file = join(this.#root, INDEX_FILE);
    await writeFile(`${file}.tmp`, `${JSON.stringify(index, null, 2)}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
    this.#index = index;
  }
}

async function portIsFree(host: string, port: number): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once("error", reject);
      server.listen({ host, port, exclusive: true }, resolveListen);
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise<void>((resolveClose) =>
      server.close(() => {
        resolveClose();
      }),
    );
  }
}
