import type { Knex } from "knex";
import type { RoomId, TenantId } from "../shared/ids.ts";
import type { BridgeNetwork } from "./networks.ts";

/**
 * The bridges and bridge_rooms tables (migration 015). Functions taking a
 * `trx` run inside the caller's tenant transaction (row-level security);
 * the provisioner and the runtime's relay account use the service
 * connection for their bookkeeping, always naming the tenant.
 */

/** The provisioner's last observation of a bridge. */
export type BridgeState =
  /** Wanted, not yet started (new, or new credentials). */
  | "pending"
  /** Started, waiting for it to answer. */
  | "starting"
  /** Runs and answers; the relay is not logged in (yet). */
  | "running"
  | "logging_in"
  /** Runs, and the relay login is done: agents are relayed. */
  | "connected"
  /** The network refused the credentials: waits for new ones (last_error says why). */
  | "login_failed"
  /** Could not be started or reached; retried with backoff. */
  | "failed"
  /** Stopped while the tenant is suspended. */
  | "stopped"
  /** Disconnect requested: logging out and removing. */
  | "removing";

export type RelayState = "pending" | "set" | "failed";

/** A bridge as everyone may see it: no secrets. */
export interface BridgeRecord {
  readonly tenantId: TenantId;
  readonly network: BridgeNetwork;
  readonly desired: "enabled" | "disabled";
  readonly state: BridgeState;
  readonly credentialsVersion: number;
  readonly loginVersion: number;
  readonly loginFailedVersion: number;
  readonly relayLoginId: string | null;
  readonly relayRemoteName: string | null;
  readonly lastError: string | null;
  readonly failures: number;
  readonly nextAttemptAt: Date | null;
  readonly connectedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** The encrypted secrets of a bridge (SecretCipher ciphertexts), for the provisioner only. */
export interface BridgeSecretsEncrypted {
  /** JSON of BridgeCredentials; null once disconnected. */
  readonly credentials: string | null;
  readonly asToken: string;
  readonly hsToken: string;
  readonly provisioningSecret: string;
}

export interface BridgeWithSecrets extends BridgeRecord {
  readonly secrets: BridgeSecretsEncrypted;
}

export interface BridgeRoom {
  readonly tenantId: TenantId;
  readonly roomId: RoomId;
  readonly network: BridgeNetwork;
  readonly remoteName: string | null;
  readonly relayState: RelayState;
  readonly lastError: string | null;
  readonly joinedAt: Date;
}

interface BridgeRow {
  tenant_id: string;
  network: BridgeNetwork;
  desired: "enabled" | "disabled";
  credentials_encrypted: string | null;
  credentials_version: number;
  login_version: number;
  login_failed_version: number;
  as_token_encrypted: string;
  hs_token_encrypted: string;
  provisioning_secret_encrypted: string;
  state: BridgeState;
  relay_login_id: string | null;
  relay_remote_name: string | null;
  last_error: string | null;
  failures: number;
  next_attempt_at: Date | string | null;
  connected_at: Date | string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

interface RoomRow {
  tenant_id: string;
  room_id: string;
  network: BridgeNetwork;
  remote_name: string | null;
  relay_state: RelayState;
  last_error: string | null;
  joined_at: Date | string;
}

const date = (value: Date | string | null): Date | null =>
  value === null ? null : new Date(value);

/** last_error is shown to tenant admins; long upstream answers are cut. */
const MAX_ERROR_CHARS = 500;

function truncateBridgeError(message: string): string {
  return message.length <= MAX_ERROR_CHARS ? message : `${message.slice(0, MAX_ERROR_CHARS - 1)}…`;
}

function toRecord(row: BridgeRow): BridgeRecord {
  return {
    tenantId: row.tenant_id as TenantId,
    network: row.network,
    desired: row.desired,
    state: row.state,
    credentialsVersion: row.credentials_version,
    loginVersion: row.login_version,
    loginFailedVersion: row.login_failed_version,
    relayLoginId: row.relay_login_id,
    relayRemoteName: row.relay_remote_name,
    lastError: row.last_error,
    failures: row.failures,
    nextAttemptAt: date(row.next_attempt_at),
    connectedAt: date(row.connected_at),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toRecordWithSecrets(row: BridgeRow): BridgeWithSecrets {
  return {
    ...toRecord(row),
    secrets: {
      credentials: row.credentials_encrypted,
      asToken: row.as_token_encrypted,
      hsToken: row.hs_token_encrypted,
      provisioningSecret: row.provisioning_secret_encrypted,
    },
  };
}

function toRoom(row: RoomRow): BridgeRoom {
  return {
    tenantId: row.tenant_id as TenantId,
    roomId: row.room_id as RoomId,
    network: row.network,
    remoteName: row.remote_name,
    relayState: row.relay_state,
    lastError: row.last_error,
    joinedAt: new Date(row.joined_at),
  };
}

/** Columns the provisioner may set after observing a bridge. */
export interface BridgeObservationUpdate {
  readonly state?: BridgeState;
  readonly lastError?: string | null;
  readonly failures?: number;
  readonly nextAttemptAt?: Date | null;
  readonly loginVersion?: number;
  readonly loginFailedVersion?: number;
  readonly relayLoginId?: string | null;
  readonly relayRemoteName?: string | null;
  readonly connectedAt?: Date | null;
}

export const bridgeStore = {
  /** The tenant's bridges, enabled or being removed, in network order. */
  async list(trx: Knex | Knex.Transaction, tenantId: TenantId): Promise<BridgeRecord[]> {
    const rows = (await trx("bridges")
      .where({ tenant_id: tenantId })
      .orderBy("network")) as BridgeRow[];
    return rows.map(toRecord);
  },

  async find(
    trx: Knex | Knex.Transaction,
    tenantId: TenantId,
    network: BridgeNetwork,
  ): Promise<BridgeRecord | undefined> {
    const row = (await trx("bridges").where({ tenant_id: tenantId, network }).first()) as
      BridgeRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  },

  /** For the provisioner: every bridge of the tenant with its encrypted secrets. */
  async listWithSecrets(
    db: Knex | Knex.Transaction,
    tenantId: TenantId,
  ): Promise<BridgeWithSecrets[]> {
    const rows = (await db("bridges")
      .where({ tenant_id: tenantId })
      .orderBy("network")) as BridgeRow[];
    return rows.map(toRecordWithSecrets);
  },

  /** Enabled bridges other than `except`: what the plan's bridge limit counts. */
  async countEnabled(
    trx: Knex.Transaction,
    tenantId: TenantId,
    except?: BridgeNetwork,
  ): Promise<number> {
    const query = trx("bridges").where({ tenant_id: tenantId, desired: "enabled" });
    if (except !== undefined) query.whereNot({ network: except });
    const row = (await query.count({ n: "*" }).first()) as { n: number | string };
    return Number(row.n);
  },

  /**
   * Creates the bridge with fresh tokens, or gives an existing one new
   * credentials (a reconnect): enabled again, credentials_version bumped so
   * the provisioner logs the relay in anew, state pending, error cleared.
   * Tokens of an existing bridge are kept (its registration stays valid).
   */
  async upsertCredentials(
    trx: Knex.Transaction,
    input: {
      readonly tenantId: TenantId;
      readonly network: BridgeNetwork;
      readonly credentialsEncrypted: string;
      /** Used only when the bridge is new. */
      readonly fresh: Omit<BridgeSecretsEncrypted, "credentials">;
    },
  ): Promise<BridgeRecord> {
    const rows = (await trx("bridges")
      .insert({
        tenant_id: input.tenantId,
        network: input.network,
        desired: "enabled",
        credentials_encrypted: input.credentialsEncrypted,
        as_token_encrypted: input.fresh.asToken,
        hs_token_encrypted: input.fresh.hsToken,
        provisioning_secret_encrypted: input.fresh.provisioningSecret,
      })
      .onConflict(["tenant_id", "network"])
      .merge({
        desired: "enabled",
        credentials_encrypted: input.credentialsEncrypted,
        credentials_version: trx.raw("bridges.credentials_version + 1"),
        state: "pending",
        last_error: null,
        failures: 0,
        next_attempt_at: null,
        updated_at: trx.fn.now(),
      })
      .returning("*")) as BridgeRow[];
    return toRecord(rows[0] as BridgeRow);
  },

  /**
   * Disconnect: the credentials are erased at once and the provisioner
   * takes the bridge down (logout, removal), then deletes the row.
   * Returns false when the tenant has no such bridge.
   */
  async markDisabled(
    trx: Knex.Transaction,
    tenantId: TenantId,
    network: BridgeNetwork,
  ): Promise<boolean> {
    const updated = await trx("bridges").where({ tenant_id: tenantId, network }).update({
      desired: "disabled",
      credentials_encrypted: null,
      state: "removing",
      next_attempt_at: null,
      updated_at: trx.fn.now(),
    });
    return updated > 0;
  },

  async update(
    db: Knex | Knex.Transaction,
    tenantId: TenantId,
    network: BridgeNetwork,
    fields: BridgeObservationUpdate,
  ): Promise<void> {
    const columns: Record<string, unknown> = { updated_at: db.fn.now() };
    if (fields.state !== undefined) columns.state = fields.state;
    if (fields.lastError !== undefined)
      columns.last_error = fields.lastError === null ? null : truncateBridgeError(fields.lastError);
    if (fields.failures !== undefined) columns.failures = fields.failures;
    if (fields.nextAttemptAt !== undefined) columns.next_attempt_at = fields.nextAttemptAt;
    if (fields.loginVersion !== undefined) columns.login_version = fields.loginVersion;
    if (fields.loginFailedVersion !== undefined)
      columns.login_failed_version = fields.loginFailedVersion;
    if (fields.relayLoginId !== undefined) columns.relay_login_id = fields.relayLoginId;
    if (fields.relayRemoteName !== undefined) columns.relay_remote_name = fields.relayRemoteName;
    if (fields.connectedAt !== undefined) columns.connected_at = fields.connectedAt;
    await db("bridges").where({ tenant_id: tenantId, network }).update(columns);
  },

  /** After removal: the row and its rooms (cascade) go. Only rows still disabled are deleted. */
  async deleteDisabled(
    db: Knex | Knex.Transaction,
    tenantId: TenantId,
    network: BridgeNetwork,
  ): Promise<void> {
    await db("bridges").where({ tenant_id: tenantId, network, desired: "disabled" }).delete();
  },

  async listRooms(
    trx: Knex | Knex.Transaction,
    tenantId: TenantId,
    network?: BridgeNetwork,
  ): Promise<BridgeRoom[]> {
    const query = trx("bridge_rooms").where({ tenant_id: tenantId });
    if (network !== undefined) query.andWhere({ network });
    const rows = (await query.orderBy("joined_at").orderBy("room_id")) as RoomRow[];
    return rows.map(toRoom);
  },

  async findRoom(
    db: Knex | Knex.Transaction,
    tenantId: TenantId,
    roomId: RoomId,
  ): Promise<BridgeRoom | undefined> {
    const row = (await db("bridge_rooms")
      .where({ tenant_id: tenantId, room_id: roomId })
      .first()) as RoomRow | undefined;
    return row === undefined ? undefined : toRoom(row);
  },

  /** Records a portal the relay account joined; a known room keeps its relay state. */
  async recordRoom(
    db: Knex | Knex.Transaction,
    room: {
      readonly tenantId: TenantId;
      readonly roomId: RoomId;
      readonly network: BridgeNetwork;
      readonly remoteName: string | null;
    },
  ): Promise<void> {
    await db("bridge_rooms")
      .insert({
        tenant_id: room.tenantId,
        room_id: room.roomId,
        network: room.network,
        remote_name: room.remoteName,
      })
      .onConflict(["tenant_id", "room_id"])
      .merge({ remote_name: room.remoteName, updated_at: db.fn.now() });
  },

  async setRoomRelay(
    db: Knex | Knex.Transaction,
    tenantId: TenantId,
    roomId: RoomId,
    relayState: RelayState,
    lastError: string | null = null,
  ): Promise<void> {
    await db("bridge_rooms")
      .where({ tenant_id: tenantId, room_id: roomId })
      .update({
        relay_state: relayState,
        last_error: lastError === null ? null : truncateBridgeError(lastError),
        updated_at: db.fn.now(),
      });
  },

  async deleteRoom(db: Knex | Knex.Transaction, tenantId: TenantId, roomId: RoomId): Promise<void> {
    await db("bridge_rooms").where({ tenant_id: tenantId, room_id: roomId }).delete();
  },
};
