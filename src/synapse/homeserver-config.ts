import { isMap, isSeq, parseDocument } from "yaml";
import { AppError, badRequest } from "../shared/errors.ts";

/**
 * Pure rendering of a tenant homeserver's homeserver.yaml: the template in
 * synapse/homeserver.yaml plus the keys that differ per homeserver. No I/O
 * here; homeserver-data-dir.ts reads and writes the files.
 */

/** Where a homeserver's data directory appears inside the Synapse chroot. */
export const CHROOT_MOUNT_POINT = "/srv/hs";

/** File and directory names inside a homeserver's data directory. */
export const DATA_DIR_LAYOUT = {
  config: "homeserver.yaml",
  logConfig: "log.yaml",
  log: "homeserver.log",
  pid: "homeserver.pid",
  secrets: "secrets.json",
  signingKey: "signing.key",
  sqliteDatabase: "homeserver.db",
  mediaStore: "media_store",
  appservices: "appservices",
} as const;

/** Connections each Synapse opens to PostgreSQL at most; many tenants share one server. */
const POSTGRES_POOL_MAX_CONNECTIONS = 5;

export type HomeserverDatabase =
  | { readonly kind: "sqlite" }
  | {
      readonly kind: "postgres";
      /** Reached from inside the chroot, which shares the host's network: use an address, not a unix socket. */
      readonly host: string;
      readonly port: number;
      readonly user: string;
      readonly password?: string;
      readonly database: string;
    };

export interface HomeserverSpec {
  readonly serverName: string;
  /** Address the client listener binds to, e.g. "127.0.0.1". */
  readonly bindHost: string;
  readonly port: number;
  /** Host directory owned by this homeserver: config, keys, database, media, log. */
  readonly dataDir: string;
  /** Defaults to http://bindHost:port/. */
  readonly publicBaseUrl?: string;
  readonly database: HomeserverDatabase;
  readonly registrationSharedSecret: string;
  /**
   * Appservice registrations by file name ("switchboard.yaml" -> YAML text);
   * written into dataDir and listed in app_service_config_files.
   */
  readonly appserviceRegistrations: Readonly<Record<string, string>>;
}

/** Per-homeserver secrets generated on first start and kept across restarts. */
export interface HomeserverSecrets {
  /** Signs access tokens and login macaroons: changing it logs everyone out. */
  readonly macaroonSecretKey: string;
  readonly formSecret: string;
}

const SERVER_NAME = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::\d{1,5})?$/;
const REGISTRATION_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.yaml$/;

/** Throws a bad_request AppError naming the first invalid field of the spec. */
export function validateHomeserverSpec(spec: HomeserverSpec): void {
  if (!SERVER_NAME.test(spec.serverName)) {
    throw badRequest(
      `serverName "${spec.serverName}" is not a lowercase DNS name (with optional :port)`,
      {
        field: "serverName",
      },
    );
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) {
    throw badRequest(`port ${spec.port} is not between 1 and 65535`, { field: "port" });
  }
  if (spec.bindHost.length === 0) throw badRequest("bindHost is empty", { field: "bindHost" });
  if (spec.registrationSharedSecret.length < 16) {
    throw badRequest("registrationSharedSecret must be at least 16 characters", {
      field: "registrationSharedSecret",
    });
  }
  if (spec.publicBaseUrl !== undefined && !/^https?:\/\/[^/]+/.test(spec.publicBaseUrl)) {
    throw badRequest(`publicBaseUrl "${spec.publicBaseUrl}" is not an http(s) URL`, {
      field: "publicBaseUrl",
    });
  }
  for (const name of Object.keys(spec.appserviceRegistrations)) validateRegistrationFileName(name);
}

/** Registration file names become paths: no separators, no dot files, must end in .yaml. */
export function validateRegistrationFileName(name: string): void {
  if (!REGISTRATION_FILE_NAME.test(name)) {
    throw badRequest(
      `appservice registration file name "${name}" must match ${REGISTRATION_FILE_NAME.source}`,
      {
        field: "appserviceRegistrations",
      },
    );
  }
}

/** The host part of a URL for an address: IPv6 literals need brackets. */
function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * The base URL Switchboard uses to reach the homeserver, without a trailing
 * slash. A wildcard bind address is reached over loopback.
 */
export function clientUrlFor(spec: Pick<HomeserverSpec, "bindHost" | "port">): string {
  const host =
    spec.bindHost === "0.0.0.0" ? "127.0.0.1" : spec.bindHost === "::" ? "::1" : spec.bindHost;
  return `http://${urlHost(host)}:${spec.port}`;
}

function inChroot(name: string): string {
  return `${CHROOT_MOUNT_POINT}/${name}`;
}

function databaseConfig(database: HomeserverDatabase): Record<string, unknown> {
  if (database.kind === "sqlite") {
    return { name: "sqlite3", args: { database: inChroot(DATA_DIR_LAYOUT.sqliteDatabase) } };
  }
  return {
    name: "psycopg2",
    args: {
      user: database.user,
      ...(database.password === undefined ? {} : { password: database.password }),
      dbname: database.database,
      host: database.host,
      port: database.port,
      cp_min: 1,
      cp_max: POSTGRES_POOL_MAX_CONNECTIONS,
    },
  };
}

/**
 * The top-level keys that differ per homeserver, with paths as Synapse sees
 * them inside the chroot. Everything else comes from the template.
 */
export function homeserverOverrides(
  spec: HomeserverSpec,
  secrets: HomeserverSecrets,
): Record<string, unknown> {
  const registrationFiles = Object.keys(spec.appserviceRegistrations)
    .sort()
    .map((name) => inChroot(`${DATA_DIR_LAYOUT.appservices}/${name}`));
  return {
    server_name: spec.serverName,
    public_baseurl: spec.publicBaseUrl ?? `http://${urlHost(spec.bindHost)}:${spec.port}/`,
    pid_file: inChroot(DATA_DIR_LAYOUT.pid),
    database: databaseConfig(spec.database),
    log_config: inChroot(DATA_DIR_LAYOUT.logConfig),
    media_store_path: inChroot(DATA_DIR_LAYOUT.mediaStore),
    signing_key_path: inChroot(DATA_DIR_LAYOUT.signingKey),
    registration_shared_secret: spec.registrationSharedSecret,
    macaroon_secret_key: secrets.macaroonSecretKey,
    form_secret: secrets.formSecret,
    app_service_config_files: registrationFiles,
  };
}

/**
 * Renders homeserver.yaml from the template text. The template's comments are
 * kept so that the generated file stays readable; overridden keys keep their
 * position. Throws an internal AppError if the template is not a YAML mapping
 * with a listeners list.
 */
export function renderHomeserverConfig(
  templateText: string,
  spec: HomeserverSpec,
  secrets: HomeserverSecrets,
): string {
  validateHomeserverSpec(spec);
  const document = parseDocument(templateText);
  if (document.errors.length > 0) {
    throw new AppError(
      "internal",
      `homeserver template is not valid YAML: ${document.errors[0]?.message ?? ""}`,
    );
  }
  if (!isMap(document.contents))
    throw new AppError("internal", "homeserver template is not a YAML mapping");
  const listeners = document.get("listeners");
  if (!isSeq(listeners) || !isMap(listeners.get(0))) {
    throw new AppError("internal", "homeserver template has no listeners[0] to bind");
  }
  // One listener serves the client API (and /health); extra ones in the template would clash on ports.
  while (listeners.items.length > 1) listeners.delete(1);
  document.setIn(["listeners", 0, "port"], spec.port);
  document.setIn(
    ["listeners", 0, "bind_addresses"],
    document.createNode([spec.bindHost], { flow: true }),
  );

  for (const [key, value] of Object.entries(homeserverOverrides(spec, secrets))) {
    document.set(key, document.createNode(value));
  }
  document.commentBefore =
    ` Generated by Switchboard from synapse/homeserver.yaml for ${spec.serverName}.\n` +
    " Rewritten on every start: edit the template (or the code) instead.";
  return document.toString({ lineWidth: 0 });
}
