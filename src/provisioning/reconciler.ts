import { randomBytes } from "node:crypto";
import type { Knex } from "knex";
import { withSystemTransaction } from "../db/tenant-transaction.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { describeError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { tenantDeletion } from "../tenants/deletion.ts";
import type { Entitlements } from "../tenants/entitlements.ts";
import { tenantHolds } from "../tenants/holds.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import type { TenantBootstrapper } from "./bootstrap.ts";
import type { BridgeReconciler } from "./bridge-reconciler.ts";
import type { HomeserverDatabaseChoice, HomeserverDriver, HomeserverState } from "./driver.ts";
import type { HomeserverProbe } from "./homeserver-checks.ts";
import { provisioningState, type DesiredState, type TenantToReconcile } from "./state.ts";

const HEALTH_POLL_INTERVAL_MS = 250;
/** A Synapse admin registration needs at least 16 characters; 32 random bytes is plenty. */
const SHARED_SECRET_BYTES = 32;

export interface ReconcilerOptions {
  readonly reconcileIntervalMs: number;
  /** Between passes, how often to look for requests (new tenants, re-provision) that want one now. */
  readonly demandPollMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly healthTimeoutMs: number;
  readonly alertAfterFailures: number;
}

export interface ReconcilerDeps {
  readonly db: Knex;
  readonly cipher: SecretCipher;
  readonly driver: HomeserverDriver;
  readonly tenants: TenantRepository;
  readonly entitlements: Entitlements;
  readonly probe: HomeserverProbe;
  readonly bootstrapper: TenantBootstrapper;
  readonly registrationYaml: (homeserver: TenantHomeserver) => string;
  /** Runs the tenants' bridges; without it bridges rows are left alone. */
  readonly bridges?: BridgeReconciler;
  readonly log: Logger;
  readonly options: ReconcilerOptions;
  readonly database?: HomeserverDatabaseChoice;
  /** Called after a tenant's client URL changed (the in-process runtime reloads it). */
  readonly onHomeserverChanged?: (tenantId: TenantId) => void;
  /** Called once per finished step, for metrics. */
  readonly onStep?: (step: string, outcome: "done" | "failed", durationMs: number) => void;
  readonly now?: () => Date;
}

/** What one pass did for one tenant (logs, tests). */
export interface TenantOutcome {
  readonly tenantId: TenantId;
  readonly desired: DesiredState;
  readonly result: "converged" | "failed" | "skipped";
  readonly error?: string;
}

/** Delay before attempt n+1 after `failures` consecutive failures: doubling, capped. */
export function backoffMs(failures: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
}

/** What a tenant's homeserver should be: the database is the only input. */
export function desiredState(tenant: TenantToReconcile, now: Date): DesiredState {
  if (tenant.deleteAfter !== null && tenant.deleteAfter.getTime() <= now.getTime())
    return "deleted";
  return tenant.holds > 0 ? "stopped" : "running";
}

/**
 * The provisioner: a level-based loop. Every pass reads each managed
 * tenant's desired state from the database (deleted after retention,
 * stopped while any hold exists, else running on its plan's resources) and
 * converges the driver's reality to it with idempotent steps, each recorded
 * in provisioning_steps. Tenants are independent: one failing tenant gets a
 * doubling backoff (provisioning.next_attempt_at) and the others go on. One
 * pass runs at a time; trigger() asks for another (after sign-up, an
 * operator's re-provision) and a request newer than the tenant's last
 * reconcile skips its backoff. No network call happens inside a transaction.
 */
export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #log: Logger;
  readonly #now: () => Date;
  #timer: NodeJS.Timeout | undefined;
  #demandTimer: NodeJS.Timeout | undefined;
  #pass: Promise<TenantOutcome[]> | undefined;
  /** The pass queued behind the running one; every trigger during a pass shares it. */
  #next: Promise<TenantOutcome[]> | undefined;
  #stopped = false;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "reconciler", driver: deps.driver.name });
    this.#now = deps.now ?? (() => new Date());
  }

  /** Runs a pass now and then every reconcileIntervalMs until stop(). */
  start(): void {
    this.#stopped = false;
    this.trigger();
    this.#timer = setInterval(() => {
      this.trigger();
    }, this.#deps.options.reconcileIntervalMs);
    this.#timer.unref();
    this.#demandTimer = setInterval(() => {
      void this.#pollDemand();
    }, this.#deps.options.demandPollMs);
    this.#demandTimer.unref();
  }

  async #pollDemand(): Promise<void> {
    if (this.#pass !== undefined || this.#stopped) return;
    try {
      if (await provisioningState.hasDemand(this.#deps.db)) this.trigger();
    } catch (error) {
      this.#log.warn({ err: error }, "could not look for provisioning requests");
    }
  }

  /** Asks for a pass soon; while one runs, another follows it. Never throws. */
  trigger(): void {
    void this.runPass().catch((error: unknown) => {
      this.#log.error({ err: error }, "reconcile pass failed");
    });
  }

  /**
   * One pass over every managed tenant; resolves with what it did. While a
   * pass runs, a call waits for it and then runs a fresh one (work asked
   * for during a pass is never lost), shared by every caller that waited.
   */
  async runPass(): Promise<TenantOutcome[]> {
    if (this.#pass !== undefined) {
      this.#next ??= this.#pass
        .catch(() => undefined)
        .then(() => {
          this.#next = undefined;
          return this.runPass();
        });
      return this.#next;
    }
    this.#pass = this.#runPass().finally(() => {
      this.#pass = undefined;
    });
    return this.#pass;
  }

  /** Stops the timer and waits for a running pass. The driver is closed by its owner. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#demandTimer);
    await this.#pass?.catch(() => undefined);
  }

  async #runPass(): Promise<TenantOutcome[]> {
    const startedAt = performance.now();
    const tenants = await provisioningState.listManaged(this.#deps.db);
    const outcomes: TenantOutcome[] = [];
    for (const tenant of tenants) {
      if (this.#stopped) break;
      outcomes.push(await this.#reconcileTenant(tenant));
    }
    await this.#removeOrphans(new Set(tenants.map((tenant) => tenant.tenantId)));
    const failed = outcomes.filter((outcome) => outcome.result === "failed").length;
    this.#log.debug(
      { tenants: tenants.length, failed, passMs: Math.round(performance.now() - startedAt) },
      "reconcile pass finished",
    );
    return outcomes;
  }

  async #reconcileTenant(tenant: TenantToReconcile): Promise<TenantOutcome> {
    const now = this.#now();
    const desired = desiredState(tenant, now);
    const { tenantId } = tenant;
    const record = tenant.provisioning;
    const requested =
      tenant.provisionRequestedAt !== null &&
      (record?.reconciledAt == null ||
        tenant.provisionRequestedAt.getTime() > record.reconciledAt.getTime());
    if (
      !requested &&
      record?.nextAttemptAt != null &&
      record.nextAttemptAt.getTime() > now.getTime()
    )
      return { tenantId, desired, result: "skipped" };

    const attempt = (record?.failures ?? 0) + 1;
    const log = this.#log.child({ tenantId, slug: tenant.slug, desired });
    try {
      const observed = await this.#converge(tenant, desired, attempt, requested);
      if (desired !== "deleted") {
        await provisioningState.update(this.#deps.db, tenantId, {
          desired_state: desired,
          observed_state: observed,
          observed_detail: null,
          failures: 0,
          next_attempt_at: null,
          last_error: null,
          reconciled_at: this.#reconciledAt(tenant),
        });
      }
      if ((record?.failures ?? 0) > 0) log.info({ attempt }, "homeserver recovered");
      return { tenantId, desired, result: "converged" };
    } catch (error) {
      const message = provisioningState.truncateError(describeError(error));
      const failures = attempt;
      const { initialBackoffMs, maxBackoffMs, alertAfterFailures } = this.#deps.options;
      const delayMs = backoffMs(failures, initialBackoffMs, maxBackoffMs);
      await provisioningState
        .update(this.#deps.db, tenantId, {
          desired_state: desired,
          failures,
          next_attempt_at: new Date(this.#now().getTime() + delayMs),
          last_error: message,
          // A failed pass still answers an operator's request: the next one waits for backoff.
          reconciled_at: this.#reconciledAt(tenant),
        })
        .catch((writeError: unknown) => {
          log.error({ err: writeError }, "could not record a failed reconcile");
        });
      const fields = { attempt: failures, retryInMs: delayMs, error: message };
      if (failures >= alertAfterFailures)
        log.error(fields, "homeserver keeps failing: operator attention needed");
      else log.warn(fields, "reconcile failed; will retry");
      return { tenantId, desired, result: "failed", error: message };
    }
  }

  /**
   * Never before the request this pass saw: a request is served once even
   * if this process's clock lags the database's; one made during the pass
   * is newer and gets the next pass.
   */
  #reconciledAt(tenant: TenantToReconcile): Date {
    const now = this.#now();
    const seen = tenant.provisionRequestedAt;
    return seen !== null && seen.getTime() > now.getTime() ? seen : now;
  }

  /** Converges one tenant; returns the state it leaves the homeserver in. */
  async #converge(
    tenant: TenantToReconcile,
    desired: DesiredState,
    attempt: number,
    requested: boolean,
  ): Promise<HomeserverState> {
    const { db, driver, cipher } = this.#deps;
    const { tenantId } = tenant;
    if (tenant.provisioning === null) {
      await provisioningState.adopt(
        db,
        tenantId,
        driver.name,
        cipher.encrypt(randomBytes(SHARED_SECRET_BYTES).toString("base64url")),
      );
    }
    const step = <T>(name: string, work: () => Promise<T>): Promise<T> =>
      this.#step(tenantId, name, attempt, work);

    if (desired === "deleted") {
      await step("remove", () => driver.remove(tenantId));
      // The homeserver is gone: now the tenant's data may go too (rows cascade).
      await step("purge", () => tenantDeletion.purgeDue(db, this.#now()));
      return "absent";
    }
    if (desired === "stopped") {
      const homeserver = await this.#deps.tenants.findHomeserver(db, tenantId);
      if (homeserver !== undefined)
        await this.#deps.bridges?.stopAll(
          { tenantId, slug: tenant.slug, serverName: homeserver.serverName, requested },
          step,
        );
      const observed = await driver.inspect(tenantId);
      if (observed.state === "absent" || observed.state === "stopped") return observed.state;
      await step("stop", () => driver.stop(tenantId));
      return "stopped";
    }
    return this.#run(tenant, attempt, requested, step);
  }

  async #run(
    tenant: TenantToReconcile,
    attempt: number,
    requested: boolean,
    step: <T>(name: string, work: () => Promise<T>) => Promise<T>,
  ): Promise<HomeserverState> {
    const { db, driver, cipher, tenants } = this.#deps;
    const { tenantId } = tenant;
    const [fresh] = await provisioningState.listManaged(db, tenantId);
    const record = fresh?.provisioning;
    const homeserver = await tenants.findHomeserver(db, tenantId);
    if (record == null || homeserver === undefined)
      throw new Error("tenant has no homeserver record or provisioning row");
    const sharedSecret = cipher.decrypt(record.registrationSharedSecretEncrypted);
    const fullyUp =
      record.bootstrappedAt !== null &&
      tenant.provisionedAt !== null &&
      record.observedState === "running";

    // The cheap path of a healthy tenant: no step records every interval.
    // Bridges with work left (new, disconnected, died, backoff over) take the full path.
    if (fullyUp && attempt === 1 && !requested) {
      const observed = await driver.inspect(tenantId);
      if (
        observed.state === "running" &&
        observed.clientUrl === homeserver.clientUrl &&
        (await this.#healthyOnce(homeserver)) &&
        ((await this.#deps.bridges?.settled(tenant)) ?? true)
      )
        return "running";
    }

    const { plan } = await this.#deps.entitlements.planOf(tenantId);
    // Bridges' registrations join the homeserver's: a change restarts it (no hot-loading).
    const bridges = await this.#deps.bridges?.prepare(
      { tenantId, slug: tenant.slug, serverName: homeserver.serverName, requested },
      step,
    );
    const endpoint = await step("ensure", () =>
      driver.ensure({
        tenantId,
        slug: tenant.slug,
        serverName: homeserver.serverName,
        resources: plan.homeserver,
        registrationSharedSecret: sharedSecret,
        appserviceRegistrations: {
          ...bridges?.registrations,
          "switchboard.yaml": this.#deps.registrationYaml(homeserver),
        },
        database: this.#deps.database ?? "sqlite",
      }),
    );
    let current = homeserver;
    if (endpoint.clientUrl !== homeserver.clientUrl) {
      await step("record-endpoint", () =>
        tenants.updateHomeserverUrl(db, tenantId, endpoint.clientUrl),
      );
      current = { ...homeserver, clientUrl: endpoint.clientUrl };
      this.#deps.onHomeserverChanged?.(tenantId);
    }
    await step("health", () => this.#waitHealthy(current));
    if (record.bootstrappedAt === null) {
      await step("bootstrap", () =>
        this.#deps.bootstrapper.bootstrap({
          tenantId,
          homeserver: current,
          registrationSharedSecret: sharedSecret,
          adminPasswordEncrypted: record.adminPasswordEncrypted,
          managementRoomId: record.managementRoomId,
        }),
      );
      await provisioningState.update(db, tenantId, { bootstrapped_at: this.#now() });
    }
    if (tenant.provisionedAt === null) {
      await step("mark-provisioned", () =>
        withSystemTransaction(db, (trx) => tenantHolds.markProvisioned(trx, tenantId)),
      );
    }
    await bridges?.converge();
    return "running";
  }

  async #healthyOnce(homeserver: TenantHomeserver): Promise<boolean> {
    if (!(await this.#deps.probe.healthy(homeserver.clientUrl))) return false;
    try {
      await this.#deps.probe.pingAppservice(
        homeserver.clientUrl,
        homeserver.registrationId,
        homeserver.asToken,
      );
      return true;
    } catch {
      return false;
    }
  }

  /** /health, then the appservice ping through the homeserver, until both pass or time runs out. */
  async #waitHealthy(homeserver: TenantHomeserver): Promise<void> {
    const deadline = performance.now() + this.#deps.options.healthTimeoutMs;
    let lastError = "GET /health did not answer 200";
    for (;;) {
      if (await this.#deps.probe.healthy(homeserver.clientUrl)) {
        try {
          await this.#deps.probe.pingAppservice(
            homeserver.clientUrl,
            homeserver.registrationId,
            homeserver.asToken,
          );
          return;
        } catch (error) {
          lastError = describeError(error);
        }
      }
      if (performance.now() >= deadline)
        throw new Error(
          `not healthy within ${this.#deps.options.healthTimeoutMs} ms: ${lastError}`,
        );
      await new Promise((resolveDelay) => setTimeout(resolveDelay, HEALTH_POLL_INTERVAL_MS));
    }
  }

  /** Runs a step between a `started` and a `done`/`failed` record. */
  async #step<T>(
    tenantId: TenantId,
    name: string,
    attempt: number,
    work: () => Promise<T>,
  ): Promise<T> {
    const { db } = this.#deps;
    const id = await provisioningState.stepStarted(db, tenantId, name, attempt);
    const startedAt = performance.now();
    try {
      const result = await work();
      const durationMs = Math.round(performance.now() - startedAt);
      // A purge erases the tenant's rows, this step's record among them.
      await provisioningState.stepFinished(db, id);
      this.#deps.onStep?.(name, "done", durationMs);
      this.#log.info({ tenantId, step: name, attempt, durationMs }, "provisioning step done");
      return result;
    } catch (error) {
      const durationMs = Math.round(performance.now() - startedAt);
      await provisioningState.stepFinished(db, id, describeError(error)).catch(() => undefined);
      this.#deps.onStep?.(name, "failed", durationMs);
      throw error;
    }
  }

  /** Stacks the driver still runs for tenants that no longer exist (purged elsewhere): removed. */
  async #removeOrphans(known: ReadonlySet<TenantId>): Promise<void> {
    const { driver } = this.#deps;
    if (driver.listTenants === undefined) return;
    try {
      const existing = new Set(
        ((await this.#deps.db("tenants").select("id")) as { id: TenantId }[]).map((row) => row.id),
      );
      for (const tenantId of await driver.listTenants()) {
        if (known.has(tenantId) || existing.has(tenantId)) continue;
        this.#log.warn({ tenantId }, "removing the homeserver of a tenant that no longer exists");
        await driver.remove(tenantId);
      }
    } catch (error) {
      this.#log.warn({ err: error }, "could not remove orphaned homeservers");
    }
  }
}
