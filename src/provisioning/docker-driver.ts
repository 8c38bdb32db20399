import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import type { BridgeNetwork } from "../bridges/networks.ts";
import type { TenantId } from "../shared/ids.ts";
import { AppError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import {
  DATA_MOUNT_PATH,
  LABEL,
  clientUrlFor,
  containerBody,
  databasePassword,
  homeserverFiles,
  resourceLimits,
  stackNames,
  type PostgresTarget,
  type StackResource,
} from "./docker-stack.ts";
import type {
  HomeserverDriver,
  HomeserverEndpoint,
  HomeserverObservation,
  HomeserverSpec,
} from "./driver.ts";
import type { DockerDriverFactory } from "./create-driver.ts";
import { DockerBridges } from "./docker-bridges.ts";
import { ensureContainer } from "./docker-containers.ts";
import { engine, engineError, statusOf, tolerant } from "./docker-errors.ts";
import { pullProgressLogger, type PullEvent } from "./pull-progress.ts";
import { createTar } from "./tar.ts";
import { dropTenantDatabase, ensureTenantDatabase } from "./tenant-database.ts";

/**
 * Runs each tenant's Synapse as a Docker container (the only module that
 * imports dockerode). Per tenant: a network switchboard-<slug>, a data
 * volume, a container with labels, limits, restart policy and health check.
 *
 * Secrets never go where dockerode would put them in a URL: every create
 * call passes `{ _query, _body }` (dockerode otherwise copies the whole
 * options object into the query string), and homeserver.yaml, the signing
 * key and the registrations travel in the body of an archive upload.
 */

const DEFAULT_TEMPLATE_DIR = fileURLToPath(new URL("../../synapse/", import.meta.url));
const DEFAULT_API_VERSION = "v1.47";
const DEFAULT_HEALTH_TIMEOUT_MS = 180_000;
const DEFAULT_HEALTH_POLL_MS = 1_000;
const STOP_TIMEOUT_SECONDS = 30;

export interface DockerDriverOptions {
  readonly socketPath: string;
  readonly synapseImage: string;
  /** The bridges' images (provisioning.docker.bridgeImages); defaults to the official ones. */
  readonly bridgeImages?: Readonly<Record<BridgeNetwork, string>>;
  /** Shared network of the runtime and PostgreSQL; created if missing. */
  readonly network: string;
  /** Required for spec.database "postgres": where to create databases, and how containers reach the server. */
  readonly postgres?: PostgresTarget & { readonly adminUrl: string };
  readonly logger: Logger;
  readonly templateDir?: string;
  readonly apiVersion?: string;
  readonly healthTimeoutMs?: number;
  readonly healthPollMs?: number;
}

export class DockerDriver implements HomeserverDriver {
  readonly name = "docker";
  readonly bridges: DockerBridges;
  readonly #docker: Docker;
  readonly #options: DockerDriverOptions;
  readonly #log: Logger;

  constructor(options: DockerDriverOptions) {
    this.#options = options;
    this.#log = options.logger.child({ module: "docker-driver" });
    this.#docker = new Docker({
      socketPath: options.socketPath,
      version: options.apiVersion ?? DEFAULT_API_VERSION,
    });
    this.bridges = new DockerBridges({
      docker: this.#docker,
      ...(options.bridgeImages === undefined ? {} : { images: options.bridgeImages }),
      sharedNetwork: options.network,
      ...(options.postgres === undefined ? {} : { postgres: options.postgres }),
      ensureImage: (image, log) => this.#ensureImage(image, log),
      logger: options.logger,
    });
  }

  async ensure(spec: HomeserverSpec): Promise<HomeserverEndpoint> {
    const names = stackNames(spec.slug);
    const log = this.#log.child({ tenantId: spec.tenantId, slug: spec.slug });
    const postgres = this.#options.postgres;
    const templateDir = this.#options.templateDir ?? DEFAULT_TEMPLATE_DIR;
    const [homeserverYaml, logYaml] = await Promise.all([
      readFile(`${templateDir}/homeserver.yaml`, "utf8"),
      readFile(`${templateDir}/log.yaml`, "utf8"),
    ]);
    const files = homeserverFiles(spec, { homeserverYaml, logYaml }, postgres);
    if (spec.database === "postgres" && postgres !== undefined) {
      const { created } = await ensureTenantDatabase(
        postgres.adminUrl,
        names.database,
        databasePassword(spec.registrationSharedSecret),
      );
      if (created) log.info({ database: names.database }, "created tenant database");
    }
    await this.#ensureImage(this.#options.synapseImage, log);
    await this.#ensureNetwork(this.#options.network, undefined);
    await this.#ensureNetwork(names.network, spec);
    await this.#ensureVolume(names.volume, spec);

    const body = containerBody(spec, this.#options.synapseImage, this.#options.network, files);
    const { info, created } = await ensureContainer(
      this.#docker,
      { name: names.container, tenantId: spec.tenantId, body, noun: "homeserver" },
      log,
    );
    if (!created) {
      const limits = resourceLimits(spec.resources);
      const host = info.HostConfig;
      if (host.Memory !== limits.Memory || host.NanoCpus !== limits.NanoCpus) {
        await engine("update container resources", () =>
          this.#docker.getContainer(names.container).update({ _body: limits } as never),
        );
        log.info(
          {
            container: names.container,
            memoryMb: spec.resources.memoryMb,
            cpus: spec.resources.cpus,
          },
          "updated homeserver resources in place",
        );
      }
    }
    const container = this.#docker.getContainer(names.container);
    if (info.State.Status === "created") {
      // Never started, so its files may be missing (crash after create): upload them (again).
      await engine("upload homeserver files", () =>
        container.putArchive(createTar(files, Math.floor(Date.now() / 1000)), {
          path: DATA_MOUNT_PATH,
        }),
      );
    }
    if (!info.State.Running) {
      await tolerant("start container", () => container.start());
      log.info({ container: names.container }, "started homeserver container");
    }
    await this.#waitHealthy(names.container);
    return { clientUrl: clientUrlFor(spec.slug) };
  }

  async stop(tenantId: TenantId): Promise<void> {
    for (const summary of await this.#listContainers(tenantId)) {
      await tolerant("stop container", () =>
        this.#docker.getContainer(summary.Id).stop({ t: STOP_TIMEOUT_SECONDS }),
      );
      this.#log.info({ tenantId, container: summary.Names[0] }, "stopped homeserver container");
    }
  }

  async remove(tenantId: TenantId): Promise<void> {
    const filters = this.#filters(tenantId);
    const [containers, volumes, networks] = await Promise.all([
      this.#listContainers(tenantId),
      engine("list volumes", () => this.#docker.listVolumes({ filters })),
      engine("list networks", () => this.#docker.listNetworks({ filters })),
    ]);
    // Stop first so the database can be dropped; drop it before the labelled
    // resources go, since they are how a retried remove() finds its slug.
    // Bridges first: they use the tenant's network and have their own databases.
    await this.bridges.removeTenant(tenantId);
    await this.stop(tenantId);
    const slug =
      containers[0]?.Labels[LABEL.slug] ??
      volumes.Volumes[0]?.Labels[LABEL.slug] ??
      networks[0]?.Labels?.[LABEL.slug];
    if (slug !== undefined && this.#options.postgres !== undefined) {
      await dropTenantDatabase(this.#options.postgres.adminUrl, stackNames(slug).database);
    }
    for (const summary of containers) {
      await tolerant("remove container", () =>
        this.#docker.getContainer(summary.Id).remove({ force: true }),
      );
    }
    for (const volume of volumes.Volumes) {
      await tolerant("remove volume", () => this.#docker.getVolume(volume.Name).remove());
    }
    for (const network of networks) {
      await tolerant("remove network", () => this.#docker.getNetwork(network.Id).remove());
    }
    this.#log.info({ tenantId, slug }, "removed homeserver stack");
  }

  async inspect(tenantId: TenantId): Promise<HomeserverObservation> {
    const [summary] = await this.#listContainers(tenantId);
    if (summary === undefined) {
      const volumes = await engine("list volumes", () =>
        this.#docker.listVolumes({ filters: this.#filters(tenantId) }),
      );
      const volume = volumes.Volumes[0];
      if (volume === undefined) return { state: "absent" };
      return {
        state: "stopped",
        detail: "no container (data volume kept)",
        details: { volume: volume.Name },
      };
    }
    const info = await this.#inspectContainer(summary.Id);
    if (info === undefined) return { state: "absent" };
    const slug = info.Config.Labels[LABEL.slug];
    const base = {
      ...(slug === undefined ? {} : { clientUrl: clientUrlFor(slug) }),
      details: {
        containerId: info.Id.slice(0, 12),
        image: info.Config.Image,
        restartCount: info.RestartCount,
      },
    };
    const state = info.State;
    if (state.Status === "restarting") {
      return {
        ...base,
        state: "unhealthy",
        detail: `keeps exiting (last exit code ${state.ExitCode}, ${info.RestartCount} restarts)`,
      };
    }
    if (!state.Running) {
      const oom = state.OOMKilled ? ", killed for lack of memory" : "";
      return {
        ...base,
        state: "stopped",
        detail: `${state.Status} (exit code ${state.ExitCode}${oom})`,
      };
    }
    const health = state.Health?.Status;
    if (health === "healthy" || health === undefined) return { ...base, state: "running" };
    if (health === "starting") return { ...base, state: "starting" };
    const output = state.Health?.Log.at(-1)?.Output.trim().slice(0, 200) ?? "";
    return {
      ...base,
      state: "unhealthy",
      detail: `health check failing${output === "" ? "" : `: ${output}`}`,
    };
  }

  #filters(tenantId: TenantId, resource?: StackResource): string {
    const label = [`${LABEL.tenant}=${tenantId}`];
    if (resource !== undefined) label.push(`${LABEL.resource}=${resource}`);
    return JSON.stringify({ label });
  }

  async #listContainers(tenantId: TenantId): Promise<Docker.ContainerInfo[]> {
    return engine("list containers", () =>
      this.#docker.listContainers({ all: true, filters: this.#filters(tenantId, "homeserver") }),
    );
  }

  async #inspectContainer(ref: string): Promise<Docker.ContainerInspectInfo | undefined> {
    return tolerant("inspect container", () => this.#docker.getContainer(ref).inspect());
  }

  async #ensureImage(image: string, log: Logger): Promise<void> {
    if (
      (await tolerant("inspect image", () => this.#docker.getImage(image).inspect())) !== undefined
    )
      return;
    log.info({ image }, "pulling image");
    const stream = await engine(`pull ${image}`, () => this.#docker.pull(image));
    const progress = pullProgressLogger(log, image);
    await engine(
      `pull ${image}`,
      () =>
        new Promise<void>((resolve, reject) => {
          this.#docker.modem.followProgress(
            stream,
            (error: Error | null, events: PullEvent[] | undefined) => {
              // The engine reports a failed pull as a 200 stream ending in an
              // { error } line, which followProgress passes on as output.
              const failed = events?.find((event) => event.error !== undefined)?.error;
              if (error !== null) reject(error);
              else if (failed === undefined) resolve();
              else reject(new AppError("unavailable", `docker: pull ${image} failed: ${failed}`));
            },
            progress.onProgress,
          );
        }),
    );
    log.info({ image, layers: progress.layerCount() }, "pulled image");
  }

  /** The shared network (spec undefined: no tenant labels, remove() never touches it) or a tenant's. */
  async #ensureNetwork(name: string, spec: HomeserverSpec | undefined): Promise<void> {
    if (
      (await tolerant("inspect network", () => this.#docker.getNetwork(name).inspect())) !==
      undefined
    )
      return;
    const Labels =
      spec === undefined
        ? { [LABEL.resource]: "shared-network" }
        : { [LABEL.tenant]: spec.tenantId, [LABEL.slug]: spec.slug, [LABEL.resource]: "network" };
    try {
      await this.#docker.createNetwork({
        _query: {},
        _body: { Name: name, Driver: "bridge", Labels },
      } as never);
      this.#log.info({ network: name }, "created network");
    } catch (error) {
      if (statusOf(error) !== 409) throw engineError("create network", error);
    }
  }

  async #ensureVolume(name: string, spec: HomeserverSpec): Promise<void> {
    if (
      (await tolerant("inspect volume", () => this.#docker.getVolume(name).inspect())) !== undefined
    )
      return;
    const Labels = {
      [LABEL.tenant]: spec.tenantId,
      [LABEL.slug]: spec.slug,
      [LABEL.resource]: "volume",
    };
    // The engine answers an existing name with that volume (201), so a repeat is harmless.
    await engine("create volume", () =>
      this.#docker.createVolume({
        _query: {},
        _body: { Name: name, Labels },
      } as unknown as Docker.VolumeCreateOptions),
    );
    this.#log.info({ volume: name }, "created volume");
  }

  async #waitHealthy(container: string): Promise<void> {
    const timeoutMs = this.#options.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
    const pollMs = this.#options.healthPollMs ?? DEFAULT_HEALTH_POLL_MS;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.#inspectContainer(container);
      if (info === undefined)
        throw new AppError(
          "unavailable",
          `docker: container ${container} disappeared while starting`,
        );
      const health = info.State.Health?.Status;
      if (info.State.Running && (health === "healthy" || health === undefined)) return;
      if (
        !info.State.Running &&
        info.State.Status !== "restarting" &&
        info.State.Status !== "created"
      ) {
        throw new AppError(
          "unavailable",
          `docker: container ${container} exited with code ${info.State.ExitCode} while starting`,
        );
      }
      if (Date.now() >= deadline) {
        throw new AppError(
          "unavailable",
          `docker: container ${container} not healthy after ${Math.round(timeoutMs / 1000)} s (health: ${health ?? info.State.Status})`,
        );
      }
      await delay(pollMs);
    }
  }
}

/** The factory create-driver.ts loads when provisioning.driver is "docker". */
export const createDockerDriver: DockerDriverFactory = (config, logger) => {
  const { docker, healthTimeoutMs } = config.provisioning;
  const adminUrl = docker.postgres?.adminUrl ?? config.database.url;
  if (docker.postgres !== undefined && adminUrl === undefined) {
    throw new AppError(
      "bad_request",
      "provisioning.docker.postgres.adminUrl: required when database.url is not set",
    );
  }
  return new DockerDriver({
    socketPath: docker.socketPath,
    synapseImage: docker.synapseImage,
    bridgeImages: docker.bridgeImages,
    network: docker.network,
    ...(docker.postgres === undefined || adminUrl === undefined
      ? {}
      : { postgres: { adminUrl, host: docker.postgres.host, port: docker.postgres.port } }),
    logger,
    healthTimeoutMs,
  });
};
