import type { Knex } from "knex";
import { Appservice } from "matrix-bot-sdk";
import type { TenantContext } from "../agents/conversation.ts";
import { tokenMatchesHash } from "../secrets/cipher.ts";
import { isUuid, type MatrixUserId, type TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import { TenantActivity } from "./activity.ts";
import { MatrixGateway } from "./gateway.ts";
import { buildRegistration, type RegistrationParameters } from "./registration.ts";
import { MatrixRoomState } from "./room-state.ts";
import { TenantAppserviceStorage } from "./storage.ts";

/**
 * Intents (one per agent, the bot and the relay account) a tenant's
 * Appservice keeps. matrix-bot-sdk's default of 10,000 is preallocated by
 * its LRU cache, about 400 KB per tenant before any use (bench/density.ts);
 * an evicted intent is simply rebuilt on its next use.
 */
export const INTENTS_CACHED_PER_TENANT = 256;

/** A tenant as the runtime serves it: its homeserver, appservice and chat gateway. */
export interface ServedTenant {
  readonly homeserver: TenantHomeserver;
  readonly appservice: Appservice;
  readonly gateway: MatrixGateway;
  readonly botUserId: MatrixUserId;
  /** The bridges' relay account on this homeserver. */
  readonly relayUserId: MatrixUserId;
  readonly roomState: MatrixRoomState;
  readonly activity: TenantActivity;
}

export type Authentication =
  | { readonly ok: true; readonly served: ServedTenant }
  | {
      readonly ok: false;
      readonly status: 401 | 403 | 404;
      readonly errcode: string;
      readonly error: string;
    };

/**
 * The tenants this runtime serves, each with a matrix-bot-sdk Appservice
 * built from that tenant's own registration (never started: our HTTP layer
 * receives the transactions, the Appservice supplies intents and clients).
 * Tenants created after start are loaded on their first transaction.
 */
export class TenantRegistry {
  readonly #db: Knex;
  readonly #tenants: TenantRepository;
  readonly #registration: RegistrationParameters;
  readonly #log: Logger;
  readonly #activitySaveDelayMs: number;
  readonly #served = new Map<TenantId, ServedTenant>();
  /** Tenants being loaded, so concurrent first requests share one load. */
  readonly #loading = new Map<TenantId, Promise<ServedTenant | undefined>>();

  constructor(
    db: Knex,
    tenants: TenantRepository,
    registration: RegistrationParameters,
    activitySaveDelayMs: number,
    log: Logger,
  ) {
    this.#db = db;
    this.#activitySaveDelayMs = activitySaveDelayMs;
    this.#tenants = tenants;
    this.#registration = registration;
    this.#log = log;
  }

  async loadAll(): Promise<void> {
    for (const homeserver of await this.#tenants.listHomeservers(this.#db))
      await this.#serve(homeserver);
  }

  get size(): number {
    return this.#served.size;
  }

  all(): ServedTenant[] {
    return [...this.#served.values()];
  }

  /** Finds the tenant named in the URL and checks the homeserver's token against it. */
  async authenticate(tenantId: string, token: string | undefined): Promise<Authentication> {
    if (token === undefined || token === "") {
      return {
        ok: false,
        status: 401,
        errcode: "M_UNAUTHORIZED",
        error: "Missing homeserver token",
      };
    }
    const served = isUuid(tenantId) ? await this.get(tenantId as TenantId) : undefined;
    if (served === undefined)
      return { ok: false, status: 404, errcode: "M_NOT_FOUND", error: "Unknown tenant" };
    if (!tokenMatchesHash(token, served.homeserver.hsTokenSha256)) {
      return { ok: false, status: 403, errcode: "M_FORBIDDEN", error: "Bad homeserver token" };
    }
    return { ok: true, served };
  }

  async get(tenantId: TenantId): Promise<ServedTenant | undefined> {
    const served = this.#served.get(tenantId);
    if (served !== undefined) return served;
    const pending = this.#loading.get(tenantId);
    if (pending !== undefined) return pending;
    const loading = this.#tenants
      .findHomeserver(this.#db, tenantId)
      .then((homeserver) => (homeserver === undefined ? undefined : this.#serve(homeserver)))
      .finally(() => this.#loading.delete(tenantId));
    this.#loading.set(tenantId, loading);
    return loading;
  }

  /** The tenant record as of now (status may change while the runtime runs). */
  async context(served: ServedTenant): Promise<TenantContext | undefined> {
    const tenant = await this.#tenants.findById(this.#db, served.homeserver.tenantId);
    if (tenant === undefined) return undefined;
    return {
      tenant,
      serverName: served.homeserver.serverName,
      botUserId: served.botUserId,
      relayUserId: served.relayUserId,
      chat: served.gateway,
      roomState: served.roomState,
    };
  }

  /**
   * Forgets every served tenant whose homeserver address changed in the
   * database (the provisioner moved it, maybe from another process) or that
   * is gone, so the next use reloads it. Returns how many were forgotten.
   */
  async forgetChanged(): Promise<number> {
    const current = new Map(
      (await this.#tenants.listHomeservers(this.#db)).map((homeserver) => [
        homeserver.tenantId,
        homeserver.clientUrl,
      ]),
    );
    let forgotten = 0;
    for (const [tenantId, served] of this.#served) {
      if (current.get(tenantId) === served.homeserver.clientUrl) continue;
      this.#served.delete(tenantId);
      forgotten++;
    }
    return forgotten;
  }

  /** Forgets a tenant (deleted, or its homeserver changed) so the next use reloads it. */
  forget(tenantId: TenantId): void {
    this.#served.delete(tenantId);
  }

  async #serve(homeserver: TenantHomeserver): Promise<ServedTenant> {
    const registration = buildRegistration(homeserver, this.#registration);
    const appservice = new Appservice({
      // The Appservice's own listener is never started.
      port: 0,
      bindAddress: "127.0.0.1",
      homeserverName: homeserver.serverName,
      homeserverUrl: homeserver.clientUrl,
      registration: {
        ...registration,
        namespaces: {
          // matrix-bot-sdk takes exactly one user namespace: the agents'. The
          // relay account's intent comes from getIntentForUserId all the same.
          users: registration.namespaces.users.slice(0, 1),
          rooms: registration.namespaces.rooms ?? [],
          aliases: registration.namespaces.aliases ?? [],
        },
      },
      storage: new TenantAppserviceStorage(this.#db, homeserver.tenantId),
      intentOptions: { maxCached: INTENTS_CACHED_PER_TENANT },
    });
    const served: ServedTenant = {
      homeserver,
      appservice,
      gateway: new MatrixGateway(appservice, this.#log.child({ tenantId: homeserver.tenantId })),
      botUserId: appservice.botUserId as MatrixUserId,
      relayUserId: `@${this.#registration.relayLocalpart}:${homeserver.serverName}` as MatrixUserId,
      roomState: new MatrixRoomState(appservice),
      activity: await TenantActivity.load(
        this.#db,
        homeserver.tenantId,
        this.#activitySaveDelayMs,
        this.#log,
      ),
    };
    this.#served.set(homeserver.tenantId, served);
    return served;
  }
}
