import { createHash, createHmac } from "node:crypto";
import { badRequest } from "../shared/errors.ts";
import {
  CHROOT_MOUNT_POINT,
  DATA_DIR_LAYOUT,
  renderHomeserverConfig,
  type HomeserverDatabase,
} from "../synapse/homeserver-config.ts";
import type { HomeserverResources, HomeserverSpec } from "./driver.ts";
import type { TarEntry } from "./tar.ts";

/**
 * Pure description of one tenant's Docker stack: names, labels, the
 * container's create body and the files it gets. No engine calls here
 * (docker-driver.ts makes them), so everything is unit-testable and the
 * same description can later feed a Swarm service or a Kubernetes pod spec.
 */

export const LABEL = {
  tenant: "io.switchboard.tenant",
  resource: "io.switchboard.resource",
  slug: "io.switchboard.slug",
  /** Hash of everything in the container that cannot change in place (image, files, networks). */
  specHash: "io.switchboard.spec-hash",
} as const;

export type StackResource = "network" | "volume" | "homeserver";

/** A POST /containers/create body; its LABEL.specHash label covers everything that cannot change in place. */
export type ContainerBody = Record<string, unknown> & { readonly Labels: Record<string, string> };

export const SYNAPSE_PORT = 8008;
/** The volume is mounted where homeserver-config.ts puts every path, so its rendering applies unchanged. */
export const DATA_MOUNT_PATH = CHROOT_MOUNT_POINT;
/** The uid/gid the matrixdotorg/synapse image runs Synapse as (its start.py drops to 991:991). */
export const SYNAPSE_UID = 991;
const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;
const BYTES_PER_MB = 1024 * 1024;
const NANO_CPUS_PER_CPU = 1e9;
const NANOS_PER_SECOND = 1e9;
const HEALTH_INTERVAL_SECONDS = 15;
const HEALTH_TIMEOUT_SECONDS = 5;
const HEALTH_RETRIES = 3;
/** First start runs the schema migrations; failures during this period do not count. */
const HEALTH_START_PERIOD_SECONDS = 120;
const HEALTH_START_INTERVAL_SECONDS = 2;

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$/;

export interface StackNames {
  readonly network: string;
  readonly volume: string;
  readonly container: string;
  /** Database and its owner role on the shared PostgreSQL server. */
  readonly database: string;
}

export function stackNames(slug: string): StackNames {
  if (!SLUG.test(slug)) {
    throw badRequest(`slug "${slug}" is not 1-48 lowercase letters, digits and dashes`, {
      field: "slug",
    });
  }
  return {
    network: `switchboard-${slug}`,
    volume: `switchboard-${slug}-data`,
    container: `switchboard-${slug}-synapse`,
    database: `synapse_${slug.replaceAll("-", "_")}`,
  };
}

export function stackLabels(
  spec: Pick<HomeserverSpec, "tenantId" | "slug">,
  resource: StackResource,
): Record<string, string> {
  return { [LABEL.tenant]: spec.tenantId, [LABEL.slug]: spec.slug, [LABEL.resource]: resource };
}

/** Engine resource fields for a plan's homeserver resources; swap equals memory (no swap). */
export function resourceLimits(resources: HomeserverResources): {
  Memory: number;
  MemorySwap: number;
  NanoCpus: number;
} {
  const memory = Math.round(resources.memoryMb * BYTES_PER_MB);
  return {
    Memory: memory,
    MemorySwap: memory,
    NanoCpus: Math.round(resources.cpus * NANO_CPUS_PER_CPU),
  };
}

/**
 * Secrets derived from the tenant's registration shared secret (HMAC with a
 * purpose label). They are as stable as the stored, encrypted shared secret,
 * so nothing else needs storing, and a recreated container or volume gets
 * the same values (tokens stay valid). Rotating the shared secret rotates them.
 */
export function deriveSecret(sharedSecret: string, purpose: string): Buffer {
  return createHmac("sha256", sharedSecret).update(`switchboard/homeserver/${purpose}`).digest();
}

/** Synapse's signing key file: "ed25519 <key id> <unpadded base64 seed>". */
function signingKeyFile(sharedSecret: string): string {
  const seed = deriveSecret(sharedSecret, "signing-key");
  const keyId = `a_${deriveSecret(sharedSecret, "signing-key-id").toString("hex").slice(0, 4)}`;
  return `ed25519 ${keyId} ${seed.toString("base64").replace(/=+$/, "")}\n`;
}

export interface PostgresTarget {
  /** Host and port as seen from the tenant's container. */
  readonly host: string;
  readonly port: number;
}

export function databasePassword(sharedSecret: string): string {
  return deriveSecret(sharedSecret, "database-password").toString("base64url");
}

/** The files the container's volume gets before its first start (all secret-bearing: 0600, owned by Synapse). */
export function homeserverFiles(
  spec: HomeserverSpec,
  templates: { readonly homeserverYaml: string; readonly logYaml: string },
  postgres: PostgresTarget | undefined,
): TarEntry[] {
  const names = stackNames(spec.slug);
  let database: HomeserverDatabase = { kind: "sqlite" };
  if (spec.database === "postgres") {
    if (postgres === undefined) {
      throw badRequest(
        "the docker driver needs provisioning.docker.postgres for postgres homeservers",
        {
          field: "database",
        },
      );
    }
    database = {
      kind: "postgres",
      host: postgres.host,
      port: postgres.port,
      user: names.database,
      password: databasePassword(spec.registrationSharedSecret),
      database: names.database,
    };
  }
  const config = renderHomeserverConfig(
    templates.homeserverYaml,
    {
      serverName: spec.serverName,
      bindHost: "0.0.0.0",
      port: SYNAPSE_PORT,
      dataDir: DATA_MOUNT_PATH,
      // Without a public address, the one the runtime uses (never the 0.0.0.0 bind address).
      publicBaseUrl: spec.publicBaseUrl ?? `${clientUrlFor(spec.slug)}/`,
      database,
      registrationSharedSecret: spec.registrationSharedSecret,
      appserviceRegistrations: spec.appserviceRegistrations,
    },
    {
      macaroonSecretKey: deriveSecret(spec.registrationSharedSecret, "macaroon").toString(
        "base64url",
      ),
      formSecret: deriveSecret(spec.registrationSharedSecret, "form").toString("base64url"),
    },
  );
  const owned = { uid: SYNAPSE_UID, gid: SYNAPSE_UID };
  const file = (name: string, content: string): TarEntry => ({
    name,
    content,
    mode: PRIVATE_FILE_MODE,
    ...owned,
  });
  return [
    file(DATA_DIR_LAYOUT.config, config),
    file(DATA_DIR_LAYOUT.logConfig, templates.logYaml),
    file(DATA_DIR_LAYOUT.signingKey, signingKeyFile(spec.registrationSharedSecret)),
    { name: `${DATA_DIR_LAYOUT.appservices}/`, mode: PRIVATE_DIR_MODE, ...owned },
    ...Object.keys(spec.appserviceRegistrations)
      .sort()
      .map((name) =>
        file(`${DATA_DIR_LAYOUT.appservices}/${name}`, spec.appserviceRegistrations[name] ?? ""),
      ),
  ];
}

/**
 * The body of POST /containers/create. No secrets: they travel only in the
 * archive body (homeserverFiles). Its spec-hash label covers this body
 * (without resources, which are updated in place) and the files.
 */
export function containerBody(
  spec: HomeserverSpec,
  image: string,
  sharedNetwork: string,
  files: readonly TarEntry[],
): ContainerBody {
  const names = stackNames(spec.slug);
  const body = {
    Image: image,
    Env: [
      `SYNAPSE_CONFIG_PATH=${DATA_MOUNT_PATH}/${DATA_DIR_LAYOUT.config}`,
      `SYNAPSE_DATA_DIR=${DATA_MOUNT_PATH}`,
    ],
    Labels: stackLabels(spec, "homeserver"),
    ExposedPorts: { [`${SYNAPSE_PORT}/tcp`]: {} },
    Healthcheck: {
      // The image ships curl; this is its own HEALTHCHECK, with our timings.
      Test: ["CMD-SHELL", `curl -fSs http://localhost:${SYNAPSE_PORT}/health || exit 1`],
      Interval: HEALTH_INTERVAL_SECONDS * NANOS_PER_SECOND,
      Timeout: HEALTH_TIMEOUT_SECONDS * NANOS_PER_SECOND,
      Retries: HEALTH_RETRIES,
      StartPeriod: HEALTH_START_PERIOD_SECONDS * NANOS_PER_SECOND,
      StartInterval: HEALTH_START_INTERVAL_SECONDS * NANOS_PER_SECOND,
    },
    HostConfig: {
      RestartPolicy: { Name: "unless-stopped" },
      NetworkMode: names.network,
      Mounts: [{ Type: "volume", Source: names.volume, Target: DATA_MOUNT_PATH }],
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
    },
    NetworkingConfig: {
      EndpointsConfig: {
        // The tenant's own network (later its bridges), and the shared one
        // where the runtime and PostgreSQL live and reach it by container name.
        [names.network]: { Aliases: ["synapse"] },
        [sharedNetwork]: { Aliases: [names.container] },
      },
    },
  };
  const hash = createHash("sha256").update(JSON.stringify(body));
  for (const entry of files) hash.update(`\0${entry.name}\0${entry.content ?? ""}`);
  const specHash = hash.digest("hex").slice(0, 32);
  return {
    ...body,
    Labels: { ...body.Labels, [LABEL.specHash]: specHash },
    HostConfig: { ...body.HostConfig, ...resourceLimits(spec.resources) },
  };
}

export function clientUrlFor(slug: string): string {
  return `http://${stackNames(slug).container}:${SYNAPSE_PORT}`;
}
