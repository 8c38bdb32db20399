import type { TenantId } from "../shared/ids.ts";
import type { BridgeDriver } from "./bridge-driver.ts";

/**
 * The contract between the reconciler (src/provisioning/reconciler.ts) and
 * whatever runs tenant homeservers: child processes on this machine
 * (local-driver.ts), Docker containers (docker-driver.ts), later Swarm
 * services or Kubernetes. The reconciler owns desired state, retries,
 * backoff and step records; a driver only converges one tenant's stack to a
 * spec and reports what it sees. Backups are a separate interface
 * (backups.ts): not every driver that runs homeservers can dump them.
 *
 * Rules for every method:
 * - Idempotent and safe to call again after a crash at any point (of the
 *   driver, the provisioner, or the homeserver): the reconciler repeats a
 *   call whenever it is unsure whether it took effect.
 * - May be slow (image pulls, first start of Synapse); never called twice at
 *   once for the same tenant (the reconciler runs one pass at a time), but
 *   may be called for different tenants one after another in one pass.
 * - Errors: throw an AppError (src/shared/errors.ts). `unavailable` means
 *   transient (retry later with backoff: engine down, Synapse slow to start);
 *   `bad_request` means the spec cannot work as given (retrying without a
 *   config change will fail again; still retried, with backoff, and shown to
 *   the operator); anything else is treated like `unavailable`. Messages
 *   must not contain secrets: they are stored in provisioning.last_error.
 * - Never touch the Switchboard database: the reconciler records results.
 */
export interface HomeserverDriver {
  /** "local", "docker", ...: stored in provisioning.driver. */
  readonly name: string;

  /**
   * Creates the tenant's homeserver stack if absent, or updates it to match
   * `spec` (resources, registrations, shared secret, config), and makes sure
   * it runs. Restarts it only when something changed that needs a restart
   * (e.g. an appservice registration) or it is not running. Resolves once
   * the process/container has been started and answers GET /health (the
   * reconciler then checks the appservice end to end). Data is kept across
   * calls: never recreates a database or data directory that exists.
   */
  ensure(spec: HomeserverSpec): Promise<HomeserverEndpoint>;

  /**
   * Stops the tenant's homeserver (suspension), keeping its data, database
   * and port/address so that a later ensure() resumes it unchanged. A
   * tenant with nothing running (or nothing at all) is fine: resolves.
   */
  stop(tenantId: TenantId): Promise<void>;

  /**
   * Removes everything the driver made for the tenant: processes or
   * containers, networks, volumes and data directories, and the homeserver's
   * database. Irreversible; called only after the tenant's retention period
   * is over. Removing an absent tenant resolves.
   */
  remove(tenantId: TenantId): Promise<void>;

  /**
   * What the driver sees for the tenant right now, without changing
   * anything. Cheap enough to call every pass. Errors only when the driver
   * cannot look (engine unreachable): then `unavailable`.
   */
  inspect(tenantId: TenantId): Promise<HomeserverObservation>;

  /**
   * Every tenant the driver holds anything for (running or not). Optional:
   * with it, the reconciler removes stacks whose tenant was erased
   * elsewhere (a purge it did not run). Errors: `unavailable`.
   */
  listTenants?(): Promise<TenantId[]>;

  /**
   * Runs the tenants' mautrix bridges next to their homeservers
   * (bridge-driver.ts), when the driver can. remove() takes them along.
   */
  readonly bridges?: BridgeDriver;

  /** Stops watching/owning stacks on shutdown (local: stops its children). Idempotent. */
  close?(): Promise<void>;
}

/** Which database a tenant homeserver uses; the driver creates and removes it. */
export type HomeserverDatabaseChoice = "sqlite" | "postgres";

/** Everything a driver needs to run one tenant's homeserver. */
export interface HomeserverSpec {
  readonly tenantId: TenantId;
  /** Stable, DNS-safe: names data directories, containers, databases. */
  readonly slug: string;
  /** Matrix server_name, e.g. acme.example.com. */
  readonly serverName: string;
  /** public_baseurl of the homeserver as clients see it, e.g. https://acme.example.com/. */
  readonly publicBaseUrl?: string;
  /** From the tenant's plan (Entitlements); drivers that cannot limit resources ignore them. */
  readonly resources: HomeserverResources;
  /** Per-tenant secret for shared-secret registration (decrypted; never log it). */
  readonly registrationSharedSecret: string;
  /**
   * Appservice registrations by file name ("switchboard.yaml" -> YAML text).
   * A change of content makes ensure() restart the homeserver.
   */
  readonly appserviceRegistrations: Readonly<Record<string, string>>;
  readonly database: HomeserverDatabaseChoice;
}

export interface HomeserverResources {
  readonly memoryMb: number;
  readonly cpus: number;
}

export interface HomeserverEndpoint {
  /** Base URL of the client API (no trailing slash), reachable by the runtime and the provisioner. */
  readonly clientUrl: string;
}

export type HomeserverState = "absent" | "stopped" | "starting" | "running" | "unhealthy";

export interface HomeserverObservation {
  /**
   * absent: nothing exists for the tenant (never ensured, or removed).
   * stopped: exists with its data, not running.
   * starting: running but not yet healthy (within its start timeout).
   * running: the process/container runs and /health answered.
   * unhealthy: runs but /health fails, or it keeps exiting.
   */
  readonly state: HomeserverState;
  /** Known when the stack exists. */
  readonly clientUrl?: string;
  /** Short, secret-free explanation (exit code, health check output). */
  readonly detail?: string;
  /** Driver-specific facts for the admin area (pid, container id, port). */
  readonly details?: Readonly<Record<string, string | number | boolean>>;
}
