import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BRIDGE_NETWORKS, NETWORKS } from "../bridges/networks.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { isHealthy } from "../synapse/admin-api.ts";
import type {
  BridgeDriver,
  BridgeObservation,
  BridgePlacement,
  BridgeSpec,
  BridgeTarget,
} from "./bridge-driver.ts";
import { databasePassword, deriveSecret, homeserverFiles, stackNames } from "./docker-stack.ts";
import type {
  HomeserverDriver,
  HomeserverEndpoint,
  HomeserverObservation,
  HomeserverSpec,
} from "./driver.ts";
import { dropTenantDatabase, ensureTenantDatabase } from "./tenant-database.ts";

/**
 * The `compose` driver, for self-hosting one tenant with docker-compose.yml:
 * Synapse and the bridges are compose services that Switchboard cannot
 * start or stop itself (no Docker socket), so it shares a volume with each
 * and writes their files there; provisioning/compose/supervise.sh, their
 * entrypoint, starts the process once a `ready` marker exists, restarts it
 * when the files change and stops it while a `stopped` marker exists. The
 * files are the same the docker driver uploads (docker-stack.ts), so the
 * two drivers cannot drift.
 *
 * One tenant only: the first tenant ensured owns the homeserver; another is
 * refused with a clear error (a second tenant needs the docker driver).
 */

const DEFAULT_TEMPLATE_DIR = fileURLToPath(new URL("../../synapse/", import.meta.url));
/** Written last: the supervisor starts nothing before it (never half-written files). */
const READY_MARKER = "ready";
/** While present, the supervisor keeps the process stopped (suspension, removal). */
const STOPPED_MARKER = "stopped";
/** Which tenant owns the compose homeserver (JSON Owner). */
const OWNER_FILE = "tenant.json";
const SECRET_FILE_MODE = 0o600;
const BRIDGE_DATABASE_PURPOSE = "bridge-database-password";

export interface ComposeDriverOptions {
  /** Where the shared volumes are mounted in the Switchboard container: <dir>/synapse, <dir>/bridges/<network>. */
  readonly filesDir: string;
  /** The Synapse service as the runtime and the bridges reach it, e.g. http://synapse:8008. */
  readonly homeserverUrl: string;
  /** The shared PostgreSQL: Synapse's and each bridge's own database and role are made there. */
  readonly postgres: { readonly adminUrl: string; readonly host: string; readonly port: number };
  readonly logger: Logger;
  readonly templateDir?: string;
}

export class ComposeDriver implements HomeserverDriver, BridgeDriver {
  readonly name = "compose";
  /** The bridges are compose services next to the homeserver: the same driver writes their files. */
  readonly bridges: BridgeDriver = this;
  readonly #options: ComposeDriverOptions;
  readonly #log: Logger;

  constructor(options: ComposeDriverOptions) {
    this.#options = options;
    this.#log = options.logger.child({ module: "compose-driver" });
  }

  get #synapseDir(): string {
    return join(this.#options.filesDir, "synapse");
  }

  #bridgeDir(target: BridgeTarget): string {
    return join(this.#options.filesDir, "bridges", target.network);
  }

  async ensure(spec: HomeserverSpec): Promise<HomeserverEndpoint> {
    await this.#claim(spec.tenantId, spec.slug);
    const templateDir = this.#options.templateDir ?? DEFAULT_TEMPLATE_DIR;
    const [homeserverYaml, logYaml] = await Promise.all([
      readFile(join(templateDir, "homeserver.yaml"), "utf8"),
      readFile(join(templateDir, "log.yaml"), "utf8"),
    ]);
    const { postgres } = this.#options;
    const files = homeserverFiles(
      // Without a public address, the one the runtime uses (the docker default names a container that is not there).
      {
        ...spec,
        database: "postgres",
        publicBaseUrl: spec.publicBaseUrl ?? `${this.#options.homeserverUrl}/`,
      },
      { homeserverYaml, logYaml },
      postgres,
    );
    await ensureTenantDatabase(
      postgres.adminUrl,
      stackNames(spec.slug).database,
      databasePassword(spec.registrationSharedSecret),
    );
    const changed = await writeFiles(
      this.#synapseDir,
      files.flatMap((entry) =>
        entry.content === undefined ? [] : [{ name: entry.name, content: entry.content }],
      ),
    );
    await rm(join(this.#synapseDir, STOPPED_MARKER), { force: true });
    if (changed) this.#log.info({ tenantId: spec.tenantId }, "homeserver files written");
    return { clientUrl: this.#options.homeserverUrl };
  }

  async stop(tenantId: TenantId): Promise<void> {
    if (!(await this.#owns(tenantId))) return;
    await writeFile(join(this.#synapseDir, STOPPED_MARKER), "", { mode: SECRET_FILE_MODE });
  }

  async remove(tenantId: TenantId): Promise<void> {
    const owner = await this.#owner();
    if (owner?.tenantId !== tenantId) return;
    await this.stop(tenantId);
    for (const network of BRIDGE_NETWORKS)
      await this.removeBridge({ tenantId, slug: owner.slug, network });
    await dropTenantDatabase(this.#options.postgres.adminUrl, stackNames(owner.slug).database);
    const entries = await readdir(this.#synapseDir).catch((): string[] => []);
    // The stopped marker stays until the last file is gone: the supervisor never restarts a half-removed homeserver.
    for (const entry of entries.filter((name) => name !== STOPPED_MARKER))
      await rm(join(this.#synapseDir, entry), { recursive: true, force: true });
    this.#log.info({ tenantId }, "homeserver files removed");
  }

  async inspect(tenantId: TenantId): Promise<HomeserverObservation> {
    if (!(await this.#owns(tenantId))) return { state: "absent" };
    const clientUrl = this.#options.homeserverUrl;
    if (existsSync(join(this.#synapseDir, STOPPED_MARKER))) return { state: "stopped", clientUrl };
    if (await isHealthy(clientUrl)) return { state: "running", clientUrl };
    return {
      state: "unhealthy",
      clientUrl,
      detail: "GET /health does not answer 200: is the synapse service up (docker compose ps)?",
    };
  }

  async listTenants(): Promise<TenantId[]> {
    const owner = await this.#owner();
    return owner === undefined ? [] : [owner.tenantId];
  }

  async placement(target: BridgeTarget & { databaseSecret: string }): Promise<BridgePlacement> {
    const port = NETWORKS[target.network].defaultPort;
    const service = `http://mautrix-${target.network}:${port}`;
    const { host, port: postgresPort } = this.#options.postgres;
    const database = bridgeDatabaseName(target);
    const password = deriveSecret(target.databaseSecret, BRIDGE_DATABASE_PURPOSE).toString(
      "base64url",
    );
    return Promise.resolve({
      listenHost: "0.0.0.0",
      listenPort: port,
      appserviceUrl: service,
      homeserverUrl: this.#options.homeserverUrl,
      provisioningUrl: service,
      database: {
        type: "postgres",
        uri: `postgres://${database}:${encodeURIComponent(password)}@${host}:${postgresPort}/${database}?sslmode=disable`,
      },
    });
  }

  async ensureBridge(spec: BridgeSpec): Promise<void> {
    await this.#claim(spec.tenantId, spec.slug);
    const database = bridgeDatabaseName(spec);
    await ensureTenantDatabase(
      this.#options.postgres.adminUrl,
      database,
      deriveSecret(spec.databaseSecret, BRIDGE_DATABASE_PURPOSE).toString("base64url"),
    );
    const dir = this.#bridgeDir(spec);
    await writeFiles(dir, [
      { name: "config.yaml", content: spec.configYaml },
      { name: "registration.yaml", content: spec.registrationYaml },
    ]);
    await rm(join(dir, STOPPED_MARKER), { force: true });
  }

  async stopBridge(target: BridgeTarget): Promise<void> {
    const dir = this.#bridgeDir(target);
    if (!existsSync(dir)) return;
    await writeFile(join(dir, STOPPED_MARKER), "", { mode: SECRET_FILE_MODE });
  }

  async removeBridge(target: BridgeTarget): Promise<void> {
    await this.stopBridge(target);
    const dir = this.#bridgeDir(target);
    for (const name of ["config.yaml", "registration.yaml", READY_MARKER])
      await rm(join(dir, name), { force: true });
    await dropTenantDatabase(this.#options.postgres.adminUrl, bridgeDatabaseName(target));
  }

  inspectBridge(target: BridgeTarget): Promise<BridgeObservation> {
    const dir = this.#bridgeDir(target);
    if (!existsSync(join(dir, READY_MARKER))) return Promise.resolve({ state: "absent" });
    if (existsSync(join(dir, STOPPED_MARKER))) return Promise.resolve({ state: "stopped" });
    // The process is the compose service's; its provisioning API tells the reconciler the rest.
    return Promise.resolve({ state: "running" });
  }

  async #owner(): Promise<Owner | undefined> {
    try {
      return JSON.parse(await readFile(join(this.#synapseDir, OWNER_FILE), "utf8")) as Owner;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  }

  async #owns(tenantId: TenantId): Promise<boolean> {
    return (await this.#owner())?.tenantId === tenantId;
  }

  /** The first tenant takes the compose homeserver; any other is refused. */
  async #claim(tenantId: TenantId, slug: string): Promise<void> {
    const owner = await this.#owner();
    if (owner?.tenantId === tenantId) return;
    if (owner !== undefined)
      throw badRequest(
        "the compose driver runs one tenant's homeserver and another tenant has it; use the docker driver for more tenants",
      );
    await mkdir(this.#synapseDir, { recursive: true, mode: 0o700 });
    const owned: Owner = { tenantId, slug };
    await writeFile(join(this.#synapseDir, OWNER_FILE), `${JSON.stringify(owned)}\n`, {
      mode: SECRET_FILE_MODE,
    });
  }
}

interface Owner {
  readonly tenantId: TenantId;
  readonly slug: string;
}

function bridgeDatabaseName(target: BridgeTarget): string {
  return `bridge_${target.slug.replaceAll("-", "_")}_${target.network}`.slice(0, 63);
}

/**
 * Writes files (0600) atomically, each to a temporary name then renamed,
 * and the ready marker last with a hash of everything, so the supervisor
 * sees either the old set or the new one. Resolves whether anything changed.
 */
async function writeFiles(
  dir: string,
  files: readonly { readonly name: string; readonly content: string }[],
): Promise<boolean> {
  const digest = createHash("sha256");
  for (const file of files) digest.update(`${file.name}\0${file.content}\0`);
  const hash = digest.digest("hex");
  const marker = join(dir, READY_MARKER);
  const current = await readFile(marker, "utf8").catch(() => "");
  if (current.trim() === hash) return false;
  for (const file of files) {
    const path = join(dir, file.name);
    if (file.name.includes("..")) throw new AppError("internal", `unsafe file name ${file.name}`);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(`${path}.tmp`, file.content, { mode: SECRET_FILE_MODE });
    await rename(`${path}.tmp`, path);
  }
  await writeFile(`${marker}.tmp`, `${hash}\n`, { mode: SECRET_FILE_MODE });
  await rename(`${marker}.tmp`, marker);
  return true;
}
