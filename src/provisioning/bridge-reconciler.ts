import type { Knex } from "knex";
import type { BridgeRenderInput, RelayLoginClient, RenderedBridge } from "../bridges/contracts.ts";
import { NETWORKS, type BridgeCredentials, type BridgeNetwork } from "../bridges/networks.ts";
import {
  bridgeStore,
  type BridgeObservationUpdate,
  type BridgeRecord,
  type BridgeWithSecrets,
} from "../bridges/repository.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { AppError, describeError } from "../shared/errors.ts";
import type { MatrixUserId, TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { tenantAdmins } from "../tenants/admins.ts";
import type { BridgeDriver, BridgePlacement, BridgeTarget } from "./bridge-driver.ts";
import { backoffMs } from "./reconciler.ts";

const READY_POLL_INTERVAL_MS = 250;
/** A bridge that works again: its failure bookkeeping is cleared. */
const CLEARED = { lastError: null, failures: 0, nextAttemptAt: null } as const;

/** renderBridge (src/bridges/config-render.ts). */
export type RenderBridge = (input: BridgeRenderInput) => RenderedBridge;

/** createRelayLoginClient (src/bridges/relay-login.ts). */
export type RelayLoginClientFactory = (options: {
  readonly network: BridgeNetwork;
  readonly baseUrl: string;
  readonly sharedSecret: string;
  readonly relayUserId: MatrixUserId;
  readonly timeoutMs?: number;
}) => RelayLoginClient;

/** The reconciler's step recorder for the tenant's pass (provisioning_steps). */
export type StepRunner = <T>(name: string, work: () => Promise<T>) => Promise<T>;

export interface BridgeReconcilerDeps {
  readonly db: Knex;
  readonly cipher: SecretCipher;
  readonly driver: BridgeDriver;
  readonly render: RenderBridge;
  readonly loginClient: RelayLoginClientFactory;
  /** config.runtime.relayLocalpart: the relay account on every tenant homeserver. */
  readonly relayLocalpart: string;
  /** config.bridges.readyTimeoutMs. */
  readonly readyTimeoutMs: number;
  readonly publicMediaUrl?: string;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly log: Logger;
  readonly now?: () => Date;
}

export interface BridgeTenant {
  readonly tenantId: TenantId;
  readonly slug: string;
  readonly serverName: string;
  /** A request (portal change, operator) asked for this pass: bridges in backoff are tried too. */
  readonly requested: boolean;
}

/** One tenant's bridges for one homeserver pass. */
export interface BridgePass {
  /** Registrations of the enabled bridges by file name ("bridge-slack.yaml"), for the homeserver's spec. */
  readonly registrations: Readonly<Record<string, string>>;
  /**
   * Once the homeserver is healthy: every bridge converged to its row.
   * Never throws: a failing bridge is recorded on its row, not on the tenant.
   */
  converge(): Promise<void>;
}

interface PreparedBridge {
  readonly row: BridgeWithSecrets;
  readonly target: BridgeTarget;
  readonly provisioningSecret: string;
  readonly credentials: BridgeCredentials | null;
  readonly placement: BridgePlacement;
  readonly input: BridgeRenderInput;
  readonly rendered: RenderedBridge;
}

/**
 * Runs a tenant's bridges as the reconciler's homeserver pass goes
 * (reconciler.ts calls it; the bridges table says what is wanted):
 * registrations before the homeserver's ensure (a new one restarts
 * Synapse), then each enabled bridge ensured with its rendered files, its
 * provisioning API awaited, and its relay logged in once per credentials
 * version (a refused login waits for new credentials); disabled bridges
 * logged out, removed and their rows deleted; a stopped tenant's bridges
 * stopped. Each bridge's outcome goes to its row (state, last_error,
 * backoff); bridges never fail the tenant's pass.
 */
export class BridgeReconciler {
  readonly #deps: BridgeReconcilerDeps;
  readonly #log: Logger;
  readonly #now: () => Date;

  constructor(deps: BridgeReconcilerDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "bridge-reconciler" });
    this.#now = deps.now ?? (() => new Date());
  }

  /**
   * Reads the tenant's bridges and renders the enabled ones. A bridge that
   * cannot be placed or rendered (e.g. not installed) is marked failed and
   * left out of the registrations.
   */
  async prepare(tenant: BridgeTenant, step: StepRunner): Promise<BridgePass> {
    const rows = await bridgeStore.listWithSecrets(this.#deps.db, tenant.tenantId);
    const enabled = rows.filter((row) => row.desired === "enabled");
    const admins = enabled.length === 0 ? [] : await this.#admins(tenant.tenantId);
    const prepared: PreparedBridge[] = [];
    for (const row of enabled) {
      try {
        prepared.push(await this.#prepareOne(tenant, row, admins));
      } catch (error) {
        await this.#recordFailure(row, error);
      }
    }
    return {
      registrations: Object.fromEntries(
        prepared.map((bridge) => [
          `bridge-${bridge.target.network}.yaml`,
          bridge.rendered.registrationYaml,
        ]),
      ),
      converge: async () => {
        for (const row of rows.filter((candidate) => candidate.desired === "disabled"))
          await this.#remove(tenant, row, step);
        for (const bridge of prepared) {
          if (this.#waitsForBackoff(bridge.row, tenant.requested)) continue;
          await this.#converge(bridge, step);
        }
      },
    };
  }

  /**
   * True when nothing is to be done for the tenant's bridges: each is
   * connected or waits for new credentials and runs, or waits for its
   * backoff. The reconciler's cheap path for healthy tenants asks this.
   */
  async settled(tenant: Pick<BridgeTenant, "tenantId" | "slug">): Promise<boolean> {
    const rows = await bridgeStore.list(this.#deps.db, tenant.tenantId);
    for (const row of rows) {
      if (row.desired === "disabled") return false;
      if (row.state === "failed") {
        if (this.#waitsForBackoff(row, false)) continue;
        return false;
      }
      if (row.state !== "connected" && row.state !== "login_failed") return false;
      const observed = await this.#deps.driver.inspectBridge({ ...tenant, network: row.network });
      if (observed.state !== "running") return false;
    }
    return true;
  }

  /** The tenant is suspended: its bridges are stopped (data kept); disconnected ones removed. */
  async stopAll(tenant: BridgeTenant, step: StepRunner): Promise<void> {
    const rows = await bridgeStore.listWithSecrets(this.#deps.db, tenant.tenantId);
    for (const row of rows) {
      if (row.desired === "disabled") {
        await this.#remove(tenant, row, step);
        continue;
      }
      if (row.state === "stopped") continue;
      const target = { tenantId: tenant.tenantId, slug: tenant.slug, network: row.network };
      try {
        await step(`bridge:${row.network}:stop`, () => this.#deps.driver.stopBridge(target));
        await this.#update(row, { state: "stopped", nextAttemptAt: null });
      } catch (error) {
        await this.#recordFailure(row, error);
      }
    }
  }

  async #prepareOne(
    tenant: BridgeTenant,
    row: BridgeWithSecrets,
    admins: readonly MatrixUserId[],
  ): Promise<PreparedBridge> {
    const { cipher } = this.#deps;
    const target = { tenantId: tenant.tenantId, slug: tenant.slug, network: row.network };
    const provisioningSecret = cipher.decrypt(row.secrets.provisioningSecret);
    const credentials =
      row.secrets.credentials === null
        ? null
        : (JSON.parse(cipher.decrypt(row.secrets.credentials)) as BridgeCredentials);
    const placement = await this.#deps.driver.placement({
      ...target,
      databaseSecret: provisioningSecret,
    });
    const currentLogin = row.loginVersion >= row.credentialsVersion ? row.relayLoginId : null;
    const input: BridgeRenderInput = {
      network: row.network,
      serverName: tenant.serverName,
      placement,
      registrationId: `switchboard-${row.network}`,
      asToken: cipher.decrypt(row.secrets.asToken),
      hsToken: cipher.decrypt(row.secrets.hsToken),
      provisioningSecret,
      relayUserId: this.#relayUserId(tenant.serverName),
      adminUserIds: admins,
      defaultRelayLoginIds: currentLogin === null ? [] : [currentLogin],
      ...(this.#deps.publicMediaUrl === undefined
        ? {}
        : { publicMediaUrl: this.#deps.publicMediaUrl }),
      credentials,
    };
    return {
      row,
      target,
      provisioningSecret,
      credentials,
      placement,
      input,
      rendered: this.#deps.render(input),
    };
  }

  async #converge(bridge: PreparedBridge, step: StepRunner): Promise<void> {
    const { row, target, credentials } = bridge;
    const name = `bridge:${row.network}`;
    const { driver } = this.#deps;
    const spec = (rendered: RenderedBridge) => ({
      ...target,
      databaseSecret: bridge.provisioningSecret,
      configYaml: rendered.configYaml,
      registrationYaml: rendered.registrationYaml,
    });
    try {
      if (row.state === "pending" || row.state === "stopped" || row.state === "failed")
        await this.#update(row, { state: "starting" });
      await step(`${name}:ensure`, () => driver.ensureBridge(spec(bridge.rendered)));
      const client = this.#deps.loginClient({
        network: row.network,
        baseUrl: bridge.placement.provisioningUrl,
        sharedSecret: bridge.provisioningSecret,
        relayUserId: bridge.input.relayUserId,
      });
      await step(`${name}:ready`, () => this.#waitReady(target, client));
      if (row.loginVersion >= row.credentialsVersion) {
        await this.#update(row, { state: "connected", ...CLEARED });
        return;
      }
      if (row.loginFailedVersion >= row.credentialsVersion || credentials === null) {
        // Refused before: only new credentials (a new version) are tried.
        await this.#update(row, { state: credentials === null ? "running" : "login_failed" });
        return;
      }
      await this.#update(row, { state: "logging_in" });
      let login;
      try {
        login = await step(`${name}:login`, () => client.login(credentials));
      } catch (error) {
        if (!(error instanceof AppError) || error.code !== "bad_request") throw error;
        await this.#update(row, {
          state: "login_failed",
          loginFailedVersion: row.credentialsVersion,
          lastError: error.message,
          failures: 0,
          nextAttemptAt: null,
        });
        this.#log.warn(
          { tenantId: target.tenantId, network: row.network, error: error.message },
          "relay login refused; waiting for new credentials",
        );
        return;
      }
      await this.#update(row, {
        state: "connected",
        loginVersion: row.credentialsVersion,
        relayLoginId: login.loginId,
        relayRemoteName: login.remoteName,
        connectedAt: this.#now(),
        ...CLEARED,
      });
      // The login is now the bridge's default relay: a config change, applied by a restart.
      const withRelay = this.#deps.render({
        ...bridge.input,
        defaultRelayLoginIds: [login.loginId],
      });
      await step(`${name}:set-default-relay`, () => driver.ensureBridge(spec(withRelay)));
    } catch (error) {
      await this.#recordFailure(row, error);
    }
  }

  /** Disconnect: log the relay out if the bridge runs (best effort), remove it, delete its row. */
  async #remove(tenant: BridgeTenant, row: BridgeWithSecrets, step: StepRunner): Promise<void> {
    const target = { tenantId: tenant.tenantId, slug: tenant.slug, network: row.network };
    const name = `bridge:${row.network}`;
    try {
      await step(`${name}:remove`, async () => {
        await this.#logout(tenant, row, target);
        await this.#deps.driver.removeBridge(target);
      });
      await bridgeStore.deleteDisabled(this.#deps.db, tenant.tenantId, row.network);
    } catch (error) {
      await this.#recordFailure(row, error);
    }
  }

  async #logout(tenant: BridgeTenant, row: BridgeWithSecrets, target: BridgeTarget): Promise<void> {
    try {
      if ((await this.#deps.driver.inspectBridge(target)).state !== "running") return;
      const provisioningSecret = this.#deps.cipher.decrypt(row.secrets.provisioningSecret);
      const placement = await this.#deps.driver.placement({
        ...target,
        databaseSecret: provisioningSecret,
      });
      await this.#deps
        .loginClient({
          network: row.network,
          baseUrl: placement.provisioningUrl,
          sharedSecret: provisioningSecret,
          relayUserId: this.#relayUserId(tenant.serverName),
        })
        .logout();
    } catch (error) {
      // The bridge and its data go anyway; the remote side ends the session on its own.
      this.#log.warn(
        { tenantId: tenant.tenantId, network: row.network, err: error },
        "relay logout failed before removing the bridge",
      );
    }
  }

  /** Polls ready() until it answers, the bridge's process ends, or readyTimeoutMs passes. */
  async #waitReady(target: BridgeTarget, client: RelayLoginClient): Promise<void> {
    const timeoutMs = this.#deps.readyTimeoutMs;
    const deadline = performance.now() + timeoutMs;
    const bridgeName = NETWORKS[target.network].bridgeName;
    let lastError = "no answer";
    for (;;) {
      try {
        await client.ready();
        return;
      } catch (error) {
        lastError = describeError(error);
      }
      const observed = await this.#deps.driver.inspectBridge(target);
      if (observed.state !== "running")
        throw new AppError(
          "unavailable",
          `${bridgeName} is not running (${observed.detail ?? observed.state})`,
        );
      if (performance.now() >= deadline)
        throw new AppError(
          "unavailable",
          `${bridgeName} did not answer its provisioning API within ${timeoutMs} ms: ${lastError}`,
        );
      await new Promise((resolveDelay) => setTimeout(resolveDelay, READY_POLL_INTERVAL_MS));
    }
  }

  #waitsForBackoff(
    row: Pick<BridgeRecord, "state" | "nextAttemptAt">,
    requested: boolean,
  ): boolean {
    return (
      !requested &&
      row.state === "failed" &&
      row.nextAttemptAt !== null &&
      row.nextAttemptAt.getTime() > this.#now().getTime()
    );
  }

  /** Transient (or unknown) failure: state failed, with a doubling backoff. */
  async #recordFailure(row: BridgeWithSecrets, error: unknown): Promise<void> {
    const failures = row.failures + 1;
    const delayMs = backoffMs(failures, this.#deps.initialBackoffMs, this.#deps.maxBackoffMs);
    const message = describeError(error);
    this.#log.warn(
      {
        tenantId: row.tenantId,
        network: row.network,
        attempt: failures,
        retryInMs: delayMs,
        error: message,
      },
      "bridge failed; will retry",
    );
    await this.#update(row, {
      state: "failed",
      failures,
      nextAttemptAt: new Date(this.#now().getTime() + delayMs),
      lastError: message,
    }).catch((writeError: unknown) => {
      this.#log.error(
        { err: writeError, network: row.network },
        "could not record a bridge failure",
      );
    });
  }

  #update(row: BridgeWithSecrets, fields: BridgeObservationUpdate): Promise<void> {
    return bridgeStore.update(this.#deps.db, row.tenantId, row.network, fields);
  }

  #relayUserId(serverName: string): MatrixUserId {
    return `@${this.#deps.relayLocalpart}:${serverName}` as MatrixUserId;
  }

  /** Bridge admins: the tenant's chat admins (owners' and admins' linked IDs, operators' additions) and its bootstrap admin. */
  async #admins(tenantId: TenantId): Promise<MatrixUserId[]> {
    const { db } = this.#deps;
    const listed = await withTenant(db, tenantId, (trx) => tenantAdmins.list(trx));
    const record = (await db("provisioning")
      .where({ tenant_id: tenantId })
      .first("admin_user_id")) as { admin_user_id: string | null } | undefined;
    const ids = new Set(listed.map((admin) => admin.userId));
    if (record?.admin_user_id != null) ids.add(record.admin_user_id);
    return [...ids].sort() as MatrixUserId[];
  }
}
