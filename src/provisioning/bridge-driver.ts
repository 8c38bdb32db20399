import type { BridgeNetwork } from "../bridges/networks.ts";
import type { TenantId } from "../shared/ids.ts";

/**
 * The contract between the bridge reconciler
 * (src/provisioning/bridge-reconciler.ts) and whatever runs a tenant's
 * mautrix bridges: child processes (local-bridges.ts) or containers next
 * to the tenant's Synapse (docker-bridges.ts). Same rules as
 * HomeserverDriver (driver.ts): every method idempotent and safe to repeat
 * after a crash; errors are AppErrors (`unavailable` transient,
 * `bad_request` cannot work as configured, e.g. no bridge binary);
 * messages secret-free; never touches the Switchboard database.
 *
 * Order of calls for one bridge: placement() (addresses and database for
 * the config), then the homeserver is ensured with the bridge's
 * registration, then ensureBridge() with the rendered files.
 */
export interface BridgeDriver {
  /**
   * Where the bridge of `network` lives for this tenant, decided (and kept
   * stable across restarts) by the driver: what goes into the bridge's
   * config and registration. Creating the bridge's database belongs to
   * ensureBridge; placement only names it. Pure bookkeeping: starts nothing.
   */
  placement(target: BridgeTarget & BridgeDatabaseSecret): Promise<BridgePlacement>;

  /**
   * Creates the bridge if absent, or updates it to `spec` (new config or
   * registration: restarted; same: left running), its own database included
   * (docker: a database and role on the shared PostgreSQL, never shared
   * with another bridge or tenant; local: SQLite in its directory). Resolves
   * once the process/container was started; the reconciler then waits for
   * its provisioning API itself.
   */
  ensureBridge(spec: BridgeSpec): Promise<void>;

  /** Stops the bridge (tenant suspended), keeping its data. Absent is fine. */
  stopBridge(target: BridgeTarget): Promise<void>;

  /** Removes the bridge with its data and database (disconnect). Absent is fine. */
  removeBridge(target: BridgeTarget): Promise<void>;

  /** What runs right now for the bridge; never changes anything. */
  inspectBridge(target: BridgeTarget): Promise<BridgeObservation>;
}

export interface BridgeTarget {
  readonly tenantId: TenantId;
  /** The tenant's slug: names directories, containers and databases. */
  readonly slug: string;
  readonly network: BridgeNetwork;
}

export interface BridgePlacement {
  /** Where the bridge listens (its config's appservice.hostname/port). */
  readonly listenHost: string;
  readonly listenPort: number;
  /** How the homeserver reaches the bridge: the registration's url and appservice.address. */
  readonly appserviceUrl: string;
  /** How the bridge reaches the homeserver: homeserver.address. */
  readonly homeserverUrl: string;
  /** How the provisioner reaches the bridge's provisioning API (base URL, no path). */
  readonly provisioningUrl: string;
  /**
   * The bridge's database: type and URI for its config (password included
   * when the driver made one). sqlite3 only for mautrix-discord, which has
   * no sqlite3-fk-wal driver.
   */
  readonly database: {
    readonly type: "postgres" | "sqlite3-fk-wal" | "sqlite3";
    readonly uri: string;
  };
}

export interface BridgeDatabaseSecret {
  /**
   * Per-bridge secret from which the driver derives the bridge database's
   * password (deriveSecret in docker-stack.ts); decrypted, never log it.
   */
  readonly databaseSecret: string;
}

export interface BridgeSpec extends BridgeTarget, BridgeDatabaseSecret {
  /** The rendered config.yaml (holds secrets: written 0600, never logged). */
  readonly configYaml: string;
  /** The bridge's appservice registration, as also given to the homeserver. */
  readonly registrationYaml: string;
}

export type BridgeRunState = "absent" | "stopped" | "running" | "exited";

export interface BridgeObservation {
  readonly state: BridgeRunState;
  /** Short, secret-free explanation (exit code, last log line). */
  readonly detail?: string;
}
