import { createHash } from "node:crypto";
import type Docker from "dockerode";
import { NETWORKS, type BridgeNetwork } from "../bridges/networks.ts";
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
import { ensureContainer } from "./docker-containers.ts";
import { engine, tolerant } from "./docker-errors.ts";
import {
  LABEL,
  clientUrlFor,
  deriveSecret,
  stackNames,
  type ContainerBody,
  type PostgresTarget,
} from "./docker-stack.ts";
import { createTar, type TarEntry } from "./tar.ts";
import { dropTenantDatabase, ensureTenantDatabase } from "./tenant-database.ts";

/**
 * The docker driver's bridges: per tenant and network a container
 * switchboard-<slug>-<network> from the configured image, on the tenant's
 * network (where it reaches Synapse by container name and Synapse reaches
 * it) and on the shared one (where the provisioner reaches its provisioning
 * API), with a data volume that holds config.yaml and registration.yaml
 * (uploaded as an archive: secrets never in Env or a URL), and its own
 * database and role on the shared PostgreSQL when one is configured (else
 * SQLite in its volume). Created and started by docker-driver.ts's engine
 * client; only src/provisioning talks to the engine.
 */

/** Where the mautrix images keep config, registration and SQLite (their docker-run.sh runs in /data). */
const DATA_MOUNT_PATH = "/data";
/** The uid/gid the mautrix images run the bridge as (their UID/GID defaults). */
const BRIDGE_UID = 1337;
const MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;
const PRIVATE_FILE_MODE = 0o600;
const STOP_TIMEOUT_SECONDS = 15;
/** The bridge's database password is derived from its database secret with this purpose. */
const DATABASE_PASSWORD_PURPOSE = "bridge-database-password";
/** Which network a bridge container or volume serves. */
const BRIDGE_LABEL = "io.switchboard.bridge";
const RESOURCE = { container: "bridge", volume: "bridge-volume" } as const;

export interface DockerBridgesOptions {
  readonly docker: Docker;
  /** Defaults to each network's official image (networks.ts). */
  readonly images?: Readonly<Record<BridgeNetwork, string>>;
  /** Shared network of the provisioner and PostgreSQL. */
  readonly sharedNetwork: string;
  /** The shared PostgreSQL server; without it bridges keep SQLite in their volume. */
  readonly postgres?: PostgresTarget & { readonly adminUrl: string };
  /** Pulls the image if absent (the homeserver driver's pull, with progress logs). */
  readonly ensureImage: (image: string, log: Logger) => Promise<void>;
  readonly logger: Logger;
}

export interface BridgeNames {
  readonly container: string;
  readonly volume: string;
  /** Database and owner role on the shared PostgreSQL (at most 63 characters). */
  readonly database: string;
  /** The tenant's network, made by the homeserver driver. */
  readonly tenantNetwork: string;
}

function bridgeNames(slug: string, network: BridgeNetwork): BridgeNames {
  const stack = stackNames(slug);
  return {
    container: `switchboard-${slug}-${network}`,
    volume: `switchboard-${slug}-${network}-data`,
    database: `br_${slug.replaceAll("-", "_")}_${network}`,
    tenantNetwork: stack.network,
  };
}

export function bridgeDatabasePassword(databaseSecret: string): string {
  return deriveSecret(databaseSecret, DATABASE_PASSWORD_PURPOSE).toString("base64url");
}

export class DockerBridges implements BridgeDriver {
  readonly #options: DockerBridgesOptions;
  readonly #docker: Docker;
  readonly #log: Logger;

  constructor(options: DockerBridgesOptions) {
    this.#options = options;
    this.#docker = options.docker;
    this.#log = options.logger.child({ module: "docker-bridges" });
  }

  placement(target: BridgeTarget & BridgeDatabaseSecret): Promise<BridgePlacement> {
    const names = bridgeNames(target.slug, target.network);
    const port = NETWORKS[target.network].defaultPort;
    const url = `http://${names.container}:${port}`;
    const postgres = this.#options.postgres;
    const sqlite = target.network === "discord" ? "sqlite3" : "sqlite3-fk-wal";
    const database: BridgePlacement["database"] =
      postgres === undefined
        ? { type: sqlite, uri: `file:${DATA_MOUNT_PATH}/bridge.db?_txlock=immediate` }
        : {
            type: "postgres",
            uri: `postgres://${names.database}:${bridgeDatabasePassword(target.databaseSecret)}@${postgres.host}:${postgres.port}/${names.database}?sslmode=disable`,
          };
    return Promise.resolve({
      listenHost: "0.0.0.0",
      listenPort: port,
      appserviceUrl: url,
      homeserverUrl: clientUrlFor(target.slug),
      provisioningUrl: url,
      database,
    });
  }

  async ensureBridge(spec: BridgeSpec): Promise<void> {
    const names = bridgeNames(spec.slug, spec.network);
    const log = this.#log.child({ tenantId: spec.tenantId, network: spec.network });
    const image = this.#options.images?.[spec.network] ?? NETWORKS[spec.network].defaultImage;
    const postgres = this.#options.postgres;
    if (postgres !== undefined) {
      const { created } = await ensureTenantDatabase(
        postgres.adminUrl,
        names.database,
        bridgeDatabasePassword(spec.databaseSecret),
      );
      if (created) log.info({ database: names.database }, "created bridge database");
    }
    await this.#options.ensureImage(image, log);
    await engine("create volume", () =>
      this.#docker.createVolume({
        _query: {},
        _body: { Name: names.volume, Labels: this.#labels(spec, RESOURCE.volume) },
      } as unknown as Docker.VolumeCreateOptions),
    );
    const files = bridgeFiles(spec);
    const body = this.#containerBody(spec, names, image, files);
    const { info } = await ensureContainer(
      this.#docker,
      { name: names.container, tenantId: spec.tenantId, body, noun: "bridge" },
      log,
    );
    const container = this.#docker.getContainer(names.container);
    if (info.State.Status === "created") {
      // Never started: its files may be missing (crash after create), so upload them (again).
      await engine("upload bridge files", () =>
        container.putArchive(createTar(files, Math.floor(Date.now() / 1000)), {
          path: DATA_MOUNT_PATH,
        }),
      );
    }
    if (!info.State.Running) {
      await tolerant("start container", () => container.start());
      log.info({ container: names.container }, "started bridge container");
    }
  }

  async stopBridge(target: BridgeTarget): Promise<void> {
    const { container } = bridgeNames(target.slug, target.network);
    await tolerant("stop container", () =>
      this.#docker.getContainer(container).stop({ t: STOP_TIMEOUT_SECONDS }),
    );
  }

  async removeBridge(target: BridgeTarget): Promise<void> {
    const names = bridgeNames(target.slug, target.network);
    await tolerant("remove container", () =>
      this.#docker.getContainer(names.container).remove({ force: true }),
    );
    await tolerant("remove volume", () => this.#docker.getVolume(names.volume).remove());
    if (this.#options.postgres !== undefined)
      await dropTenantDatabase(this.#options.postgres.adminUrl, names.database);
    this.#log.info(
      { tenantId: target.tenantId, network: target.network },
      "bridge removed with its volume and database",
    );
  }

  async inspectBridge(target: BridgeTarget): Promise<BridgeObservation> {
    const info = await this.#inspect(bridgeNames(target.slug, target.network).container);
    if (info === undefined) return { state: "absent" };
    const state = info.State;
    if (state.Running) return { state: "running" };
    if (state.Status === "restarting")
      return {
        state: "exited",
        detail: `keeps exiting (last exit code ${state.ExitCode}, ${info.RestartCount} restarts)`,
      };
    const oom = state.OOMKilled ? ", killed for lack of memory" : "";
    return { state: "stopped", detail: `${state.Status} (exit code ${state.ExitCode}${oom})` };
  }

  /**
   * Removes every bridge of the tenant (containers, volumes, databases),
   * found by their labels: the tenant's removal, before its network goes.
   */
  async removeTenant(tenantId: TenantId): Promise<void> {
    const listing = (resource: string): string =>
      JSON.stringify({ label: [`${LABEL.tenant}=${tenantId}`, `${LABEL.resource}=${resource}`] });
    const [containers, volumes] = await Promise.all([
      engine("list containers", () =>
        this.#docker.listContainers({ all: true, filters: listing(RESOURCE.container) }),
      ),
      engine("list volumes", () => this.#docker.listVolumes({ filters: listing(RESOURCE.volume) })),
    ]);
    const targets = new Map<string, BridgeTarget>();
    for (const labels of [
      ...containers.map((summary) => summary.Labels),
      ...volumes.Volumes.map((volume) => volume.Labels),
    ]) {
      const slug = labels[LABEL.slug];
      const network = labels[BRIDGE_LABEL] as BridgeNetwork | undefined;
      if (slug === undefined || network === undefined || !(network in NETWORKS)) continue;
      targets.set(`${slug}/${network}`, { tenantId, slug, network });
    }
    for (const target of targets.values()) await this.removeBridge(target);
  }

  #labels(target: BridgeTarget, resource: string): Record<string, string> {
    return {
      [LABEL.tenant]: target.tenantId,
      [LABEL.slug]: target.slug,
      [LABEL.resource]: resource,
      [BRIDGE_LABEL]: target.network,
    };
  }

  /** The create body: no secrets (they are in the files); its spec-hash label covers body and files. */
  #containerBody(
    spec: BridgeSpec,
    names: BridgeNames,
    image: string,
    files: readonly TarEntry[],
  ): ContainerBody {
    const body = {
      Image: image,
      // The images' docker-run.sh, minus config generation, plus --no-update:
      // the rendered config is complete and must not be rewritten.
      Cmd: [
        "/bin/sh",
        "-c",
        `chown -R ${BRIDGE_UID}:${BRIDGE_UID} ${DATA_MOUNT_PATH} && cd ${DATA_MOUNT_PATH} && exec su-exec ${BRIDGE_UID}:${BRIDGE_UID} "$0" -c config.yaml -r registration.yaml --no-update`,
        `/usr/bin/${NETWORKS[spec.network].bridgeName}`,
      ],
      Labels: this.#labels(spec, RESOURCE.container),
      ExposedPorts: { [`${NETWORKS[spec.network].defaultPort}/tcp`]: {} },
      HostConfig: {
        RestartPolicy: { Name: "unless-stopped" },
        NetworkMode: names.tenantNetwork,
        Mounts: [{ Type: "volume", Source: names.volume, Target: DATA_MOUNT_PATH }],
        Memory: MEMORY_LIMIT_BYTES,
        MemorySwap: MEMORY_LIMIT_BYTES,
        LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
      },
      NetworkingConfig: {
        EndpointsConfig: {
          [names.tenantNetwork]: { Aliases: [spec.network] },
          [this.#options.sharedNetwork]: { Aliases: [names.container] },
        },
      },
    };
    const hash = createHash("sha256").update(JSON.stringify(body));
    for (const entry of files) hash.update(`\0${entry.name}\0${entry.content ?? ""}`);
    return {
      ...body,
      Labels: { ...body.Labels, [LABEL.specHash]: hash.digest("hex").slice(0, 32) },
    };
  }

  async #inspect(ref: string): Promise<Docker.ContainerInspectInfo | undefined> {
    return tolerant("inspect container", () => this.#docker.getContainer(ref).inspect());
  }
}

/** config.yaml and registration.yaml for the volume: secret-bearing, 0600, owned by the bridge's user. */
function bridgeFiles(spec: BridgeSpec): TarEntry[] {
  const file = (name: string, content: string): TarEntry => ({
    name,
    content,
    mode: PRIVATE_FILE_MODE,
    uid: BRIDGE_UID,
    gid: BRIDGE_UID,
  });
  return [file("config.yaml", spec.configYaml), file("registration.yaml", spec.registrationYaml)];
}
