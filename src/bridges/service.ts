import type { Knex } from "knex";
import { ZodError } from "zod";
import { agentUserId } from "../agents/identity.ts";
import { agentRepository } from "../agents/repository.ts";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { generateToken, type SecretCipher } from "../secrets/cipher.ts";
import { AppError, badRequest, conflict, notFound } from "../shared/errors.ts";
import type { MatrixUserId, RoomId, TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { Entitlements } from "../tenants/entitlements.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import {
  BRIDGE_NETWORKS,
  NETWORKS,
  parseCredentials,
  type BridgeCredentials,
  type BridgeNetwork,
} from "./networks.ts";
import {
  bridgeStore,
  type BridgeRecord,
  type BridgeRoom,
  type BridgeState,
  type RelayState,
} from "./repository.ts";

/**
 * Room invitations on a tenant's homeserver, sent as one of the service's
 * appservice users (implemented by src/matrix/room-invites.ts). Never called
 * inside a database transaction. Errors are AppErrors: `upstream_failed`
 * when the homeserver cannot be reached, `conflict` when it refuses (the
 * inviter is not in the room or may not invite); nothing changed then.
 */
export interface RoomInviter {
  invite(
    homeserver: TenantHomeserver,
    inviter: MatrixUserId,
    roomId: RoomId,
    invitee: MatrixUserId,
  ): Promise<void>;
}

/** An agent in a bridged room, as the room lists it. */
export interface BridgedRoomAgent {
  readonly name: string;
  readonly displayName: string;
}

/** A remote channel the bridge made a room for, and the agents that joined it. */
export interface BridgedRoom {
  readonly roomId: RoomId;
  readonly remoteName: string | null;
  /** Whether the relay account's set-relay command went through in this room. */
  readonly relayState: RelayState;
  readonly lastError: string | null;
  readonly agents: readonly BridgedRoomAgent[];
}

/** One network's bridge as tenant members see it: never a secret, only the relay's remote name. */
export interface BridgeStatus {
  readonly network: BridgeNetwork;
  readonly displayName: string;
  /** False when the tenant never connected this network (or its removal finished). */
  readonly configured: boolean;
  /** "disabled": a disconnect is being carried out. */
  readonly desired: "enabled" | "disabled" | null;
  readonly state: BridgeState | null;
  /** The bridge process answers (whether or not its relay is logged in). */
  readonly running: boolean;
  /** The relay login is done with the current credentials. */
  readonly loggedIn: boolean;
  /** Logged in, and the relay is set in every bridged room, so agents are relayed everywhere. */
  readonly relaySet: boolean;
  /** The remote account the relay is logged in as ("Acme - switchboard"). */
  readonly relayRemoteName: string | null;
  readonly lastError: string | null;
  readonly connectedAt: Date | null;
  readonly updatedAt: Date | null;
  readonly rooms: readonly BridgedRoom[];
}

export interface BridgeServiceDeps {
  readonly db: Knex;
  readonly cipher: SecretCipher;
  readonly entitlements: Entitlements;
  readonly tenants: TenantRepository;
  readonly invites: RoomInviter;
  readonly agentPrefix: string;
  /** config.runtime.relayLocalpart: the relay account that invites agents into bridged rooms. */
  readonly relayLocalpart: string;
  readonly log: Logger;
}

const RUNNING_STATES: ReadonlySet<BridgeState> = new Set([
  "running",
  "logging_in",
  "connected",
  "login_failed",
]);

/**
 * Connecting, inspecting and disconnecting a tenant's bridges: the one
 * service the portal, the API and chat commands call, so each refuses the
 * same input with the same words. Callers check that the actor is a tenant
 * admin (members may only look). Writes happen in the tenant's transaction
 * with their audit entry, and ask the provisioner for a pass at once
 * (tenants.provision_requested_at), which starts, logs in or removes the
 * bridge; nothing here talks to a bridge.
 */
export class BridgeService {
  readonly #deps: BridgeServiceDeps;
  readonly #log: Logger;

  constructor(deps: BridgeServiceDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "bridges" });
  }

  /**
   * Stores new relay credentials for `network` (connect, or reconnect with
   * other credentials). Bad input is a bad_request naming the field (never
   * quoting it); a plan without room for another bridge is `limit_reached`.
   * Nothing is written on a refusal.
   */
  async connect(
    tenantId: TenantId,
    network: BridgeNetwork,
    input: unknown,
    by: Actor,
  ): Promise<BridgeStatus> {
    const { cipher } = this.#deps;
    const credentials = parseBridgeCredentials(network, input);
    const credentialsEncrypted = cipher.encrypt(JSON.stringify(credentials));
    const fresh = {
      asToken: cipher.encrypt(generateToken()),
      hsToken: cipher.encrypt(generateToken()),
      provisioningSecret: cipher.encrypt(generateToken()),
    };
    await withTenant(this.#deps.db, tenantId, async (trx) => {
      // The tenant row is locked before counting, so two connects at once cannot both fit one free slot.
      await this.#deps.entitlements.planIn(trx, tenantId, true);
      const enabled = await bridgeStore.countEnabled(trx, tenantId, network);
      await this.#deps.entitlements.assertCanEnableBridge(trx, tenantId, enabled);
      const before = await bridgeStore.find(trx, tenantId, network);
      const record = await bridgeStore.upsertCredentials(trx, {
        tenantId,
        network,
        credentialsEncrypted,
        fresh,
      });
      await auditLog.recordBy(
        trx,
        tenantId,
        by,
        before?.desired === "enabled" ? "bridge.credentials" : "bridge.connect",
        network,
        { credentialsVersion: record.credentialsVersion },
      );
      await requestProvisioning(trx, tenantId);
    });
    this.#log.info({ tenantId, network }, "bridge credentials stored");
    return this.status(tenantId, network);
  }

  /**
   * Disconnects `network`: the credentials are erased now, the provisioner
   * logs the relay out and removes the bridge. 404 when the tenant has no
   * such bridge, 409 when it is already being removed.
   */
  async disconnect(tenantId: TenantId, network: BridgeNetwork, by: Actor): Promise<void> {
    const { displayName } = NETWORKS[network];
    await withTenant(this.#deps.db, tenantId, async (trx) => {
      const existing = await bridgeStore.find(trx, tenantId, network);
      if (existing === undefined) throw notFound(`${displayName} bridge`);
      if (existing.desired === "disabled")
        throw conflict(`the ${displayName} bridge is already being disconnected`);
      await bridgeStore.markDisabled(trx, tenantId, network);
      await auditLog.recordBy(trx, tenantId, by, "bridge.disconnect", network);
      await requestProvisioning(trx, tenantId);
    });
    this.#log.info({ tenantId, network }, "bridge disconnect requested");
  }

  /** Every network, configured or not, in the order of BRIDGE_NETWORKS. */
  async list(tenantId: TenantId): Promise<BridgeStatus[]> {
    return withTenant(this.#deps.db, tenantId, async (trx) => {
      const records = new Map(
        (await bridgeStore.list(trx, tenantId)).map((record) => [record.network, record]),
      );
      const rooms = await bridgedRooms(trx, tenantId);
      return BRIDGE_NETWORKS.map((network) =>
        statusOf(network, records.get(network), rooms.get(network) ?? []),
      );
    });
  }

  async status(tenantId: TenantId, network: BridgeNetwork): Promise<BridgeStatus> {
    return withTenant(this.#deps.db, tenantId, async (trx) => {
      const record = await bridgeStore.find(trx, tenantId, network);
      const rooms = await bridgedRooms(trx, tenantId, network);
      return statusOf(network, record, rooms.get(network) ?? []);
    });
  }

  /**
   * Asks the tenant's homeserver, as the relay account (which the bridge's
   * room already holds), to invite the agent into a bridged room; the
   * runtime's agent joins on the invite. 404 for a room that is not one of
   * this network's bridged rooms or an unknown agent, 409 when the agent is
   * already in the room or the homeserver refuses.
   */
  async inviteAgent(
    tenantId: TenantId,
    network: BridgeNetwork,
    roomId: RoomId,
    agentName: string,
    by: Actor,
  ): Promise<void> {
    const { db, tenants, agentPrefix, relayLocalpart } = this.#deps;
    const agent = await withTenant(db, tenantId, async (trx) => {
      const room = await bridgeStore.findRoom(trx, tenantId, roomId);
      if (room?.network !== network)
        throw notFound(`bridged ${NETWORKS[network].displayName} room`);
      const found = await agentRepository.findByName(trx, agentName);
      if (found === undefined) throw notFound(`agent "${agentName}"`);
      const joined = await agentRepository.joinedTo(trx, roomId);
      if (joined.some((other) => other.id === found.id))
        throw conflict(`${found.displayName} is already in that room`);
      return found;
    });
    const homeserver = await tenants.findHomeserver(db, tenantId);
    if (homeserver === undefined)
      throw new AppError("unavailable", "this tenant's homeserver is not set up yet");
    const relay = `@${relayLocalpart}:${homeserver.serverName}` as MatrixUserId;
    const invitee = agentUserId(agentPrefix, agent.name, homeserver.serverName);
    await this.#deps.invites.invite(homeserver, relay, roomId, invitee);
    await withTenant(db, tenantId, (trx) =>
      auditLog.recordBy(trx, tenantId, by, "bridge.invite_agent", agent.name, {
        network,
        roomId,
      }),
    );
  }
}

/**
 * Credentials for `network` from a form, a JSON body or a chat command;
 * problems become one bad_request naming each field (the values are never
 * quoted: they may be tokens).
 */
export function parseBridgeCredentials(network: BridgeNetwork, input: unknown): BridgeCredentials {
  try {
    return parseCredentials(network, input);
  } catch (error) {
    if (!(error instanceof ZodError)) throw error;
    const problems = error.issues.map((issue) =>
      issue.code === "unrecognized_keys"
        ? `credentials: unknown field ${issue.keys.map(fieldName).join(", ")}`
        : `${issue.path.join(".") || "credentials"}: ${issue.message}`,
    );
    throw badRequest(problems.join("; "), { problems });
  }
}

/** A field name as typed, if it looks like one: a token pasted as a key is not quoted back. */
function fieldName(key: string): string {
  return /^[A-Za-z][A-Za-z0-9_]{0,18}$/.test(key) ? key : "(not shown)";
}

/** The provisioner watches provision_requested_at: a connect or disconnect is acted on now. */
async function requestProvisioning(trx: Knex.Transaction, tenantId: TenantId): Promise<void> {
  await trx("tenants").where({ id: tenantId }).update({ provision_requested_at: trx.fn.now() });
}

/** Bridged rooms by network, each with the agents whose last membership there is `join`. */
async function bridgedRooms(
  trx: Knex.Transaction,
  tenantId: TenantId,
  network?: BridgeNetwork,
): Promise<Map<BridgeNetwork, BridgedRoom[]>> {
  const byNetwork = new Map<BridgeNetwork, BridgedRoom[]>();
  const rooms: BridgeRoom[] = await bridgeStore.listRooms(trx, tenantId, network);
  for (const room of rooms) {
    const agents = await agentRepository.joinedTo(trx, room.roomId);
    const list = byNetwork.get(room.network) ?? [];
    list.push({
      roomId: room.roomId,
      remoteName: room.remoteName,
      relayState: room.relayState,
      lastError: room.lastError,
      agents: agents
        .map((agent) => ({ name: agent.name, displayName: agent.displayName }))
        .sort((a, b) => (a.name < b.name ? -1 : 1)),
    });
    byNetwork.set(room.network, list);
  }
  return byNetwork;
}

function statusOf(
  network: BridgeNetwork,
  record: BridgeRecord | undefined,
  rooms: readonly BridgedRoom[],
): BridgeStatus {
  const displayName = NETWORKS[network].displayName;
  if (record === undefined)
    return {
      network,
      displayName,
      configured: false,
      desired: null,
      state: null,
      running: false,
      loggedIn: false,
      relaySet: false,
      relayRemoteName: null,
      lastError: null,
      connectedAt: null,
      updatedAt: null,
      rooms,
    };
  const loggedIn = record.state === "connected";
  return {
    network,
    displayName,
    configured: true,
    desired: record.desired,
    state: record.state,
    running: RUNNING_STATES.has(record.state),
    loggedIn,
    relaySet: loggedIn && rooms.every((room) => room.relayState === "set"),
    relayRemoteName: record.relayRemoteName,
    lastError: record.lastError,
    connectedAt: record.connectedAt,
    updatedAt: record.updatedAt,
    rooms,
  };
}
