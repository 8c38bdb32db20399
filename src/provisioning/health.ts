import { Counter, Gauge, Registry } from "prom-client";
import { describeError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { HomeserverDriver } from "./driver.ts";
import type { HomeserverProbe } from "./homeserver-checks.ts";
import { backoffMs } from "./reconciler.ts";

/** A running tenant homeserver the monitor checks (as_token decrypted: never log it). */
export interface HealthTarget {
  readonly tenantId: TenantId;
  readonly slug: string;
  readonly clientUrl: string;
  readonly registrationId: string;
  readonly asToken: string;
}

export type HealthStatus = "healthy" | "degraded";

/** The monitor's memory for one tenant (table homeserver_health). */
export interface HealthRecord {
  readonly status: HealthStatus;
  readonly consecutiveFailures: number;
  readonly restarts: number;
  readonly nextRestartAt: Date | null;
  readonly alertedAt: Date | null;
  readonly lastError: string | null;
  readonly lastCheckedAt: Date | null;
  readonly lastHealthyAt: Date | null;
}

export const HEALTHY: HealthRecord = {
  status: "healthy",
  consecutiveFailures: 0,
  restarts: 0,
  nextRestartAt: null,
  alertedAt: null,
  lastError: null,
  lastCheckedAt: null,
  lastHealthyAt: null,
};

/** Where the monitor finds its targets and keeps its records (health-store.ts: the database). */
export interface HealthStore {
  /** Tenants whose homeserver should be running now (active, provisioned, bootstrapped). */
  targets(): Promise<HealthTarget[]>;
  read(tenantId: TenantId): Promise<HealthRecord>;
  write(tenantId: TenantId, record: HealthRecord): Promise<void>;
  /** Tenants currently degraded (for the gauge). */
  countDegraded(): Promise<number>;
}

export interface HealthOptions {
  readonly intervalMs: number;
  /** Consecutive failed checks before the first restart (one blip restarts nothing). */
  readonly restartAfterFailures: number;
  /** Consecutive failed checks after which the operator is alerted (error log + metric), once per streak. */
  readonly alertAfterFailures: number;
  /** Restart backoff: the delay after the n-th restart doubles from this, capped at max. */
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

export interface HealthMonitorDeps {
  readonly driver: Pick<HomeserverDriver, "inspect">;
  readonly probe: HomeserverProbe;
  readonly store: HealthStore;
  /**
   * Restarts the tenant's stack. The monitor never calls ensure itself: the
   * reconciler owns the spec and must not race a second caller on the same
   * tenant; the wiring stops the stack and asks the reconciler for a pass.
   */
  readonly restart: (tenantId: TenantId) => Promise<void>;
  readonly log: Logger;
  readonly options: HealthOptions;
  readonly now?: () => Date;
  /** Where the metrics go; default a registry of the monitor's own. */
  readonly registry?: Registry;
}

/** What one check found and did (logs, tests). */
export interface HealthOutcome {
  readonly tenantId: TenantId;
  readonly result: "healthy" | "unhealthy" | "starting";
  readonly error?: string;
  readonly restarted: boolean;
  readonly alerted: boolean;
}

export interface HealthMetrics {
  readonly registry: Registry;
  readonly checks: Counter<"result">;
  readonly restarts: Counter;
  readonly alerts: Counter;
  readonly degraded: Gauge;
}

/** One set per registry: several monitors may share one app (tests). */
const metricsByRegistry = new WeakMap<Registry, HealthMetrics>();

/**
 * The monitor's Prometheus metrics on `registry` (the provisioner passes the
 * runtime's, which the portal's /metrics serves), or on a registry of their own.
 */
export function healthMetrics(registry: Registry = new Registry()): HealthMetrics {
  const existing = metricsByRegistry.get(registry);
  if (existing !== undefined) return existing;
  const metrics: HealthMetrics = {
    registry,
    checks: new Counter({
      name: "switchboard_homeserver_health_checks_total",
      help: "Tenant homeserver health checks (/health plus the appservice ping), by result",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    restarts: new Counter({
      name: "switchboard_homeserver_restarts_total",
      help: "Tenant homeservers restarted by the health monitor",
      registers: [registry],
    }),
    alerts: new Counter({
      name: "switchboard_homeserver_alerts_total",
      help: "Operator alerts: a tenant homeserver failed alertAfterFailures checks in a row",
      registers: [registry],
    }),
    degraded: new Gauge({
      name: "switchboard_homeservers_degraded",
      help: "Tenant homeservers currently marked degraded",
      registers: [registry],
    }),
  };
  metricsByRegistry.set(registry, metrics);
  return metrics;
}

/**
 * Watches running tenant homeservers end to end: the driver's view, Synapse's
 * GET /health, then the appservice ping through the homeserver (homeserver ->
 * runtime -> homeserver, with the tenant's as_token). A failed check marks
 * the tenant degraded (the portal shows it); after restartAfterFailures the
 * stack is restarted, then again only after a doubling backoff; after
 * alertAfterFailures the operator is alerted once per failure streak. One
 * good check clears all of it. Checks run one tenant after another; one
 * tenant's failure never stops the others.
 */
export class HealthMonitor {
  readonly #deps: HealthMonitorDeps;
  readonly #log: Logger;
  readonly #now: () => Date;
  readonly metrics: HealthMetrics;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<unknown> | undefined;

  constructor(deps: HealthMonitorDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "health" });
    this.#now = deps.now ?? (() => new Date());
    this.metrics = healthMetrics(deps.registry);
  }

  /** Checks every target once now. A pass already running is waited for, not doubled. */
  async runOnce(): Promise<HealthOutcome[]> {
    while (this.#pass !== undefined) await this.#pass.catch(() => undefined);
    const pass = this.#runOnce();
    this.#pass = pass;
    try {
      return await pass;
    } finally {
      this.#pass = undefined;
    }
  }

  async #runOnce(): Promise<HealthOutcome[]> {
    const outcomes: HealthOutcome[] = [];
    for (const target of await this.#deps.store.targets()) {
      try {
        outcomes.push(await this.#check(target));
      } catch (error) {
        this.#log.error(
          { tenantId: target.tenantId, err: describeError(error) },
          "health check failed to run",
        );
      }
    }
    this.metrics.degraded.set(await this.#deps.store.countDegraded());
    return outcomes;
  }

  async #check(target: HealthTarget): Promise<HealthOutcome> {
    const { tenantId } = target;
    const problem = await this.#probe(target);
    if (problem === "starting")
      return { tenantId, result: "starting", restarted: false, alerted: false };
    const now = this.#now();
    const before = await this.#deps.store.read(tenantId);
    const log = this.#log.child({ tenantId, slug: target.slug });
    if (problem === null) {
      this.metrics.checks.inc({ result: "healthy" });
      if (before.consecutiveFailures > 0 || before.status === "degraded")
        log.info({ afterFailures: before.consecutiveFailures }, "homeserver healthy again");
      await this.#deps.store.write(tenantId, {
        ...HEALTHY,
        lastCheckedAt: now,
        lastHealthyAt: now,
      });
      return { tenantId, result: "healthy", restarted: false, alerted: false };
    }

    this.metrics.checks.inc({ result: "unhealthy" });
    const { options } = this.#deps;
    const failures = before.consecutiveFailures + 1;
    let { restarts, nextRestartAt, alertedAt } = before;
    let restarted = false;
    if (
      failures >= options.restartAfterFailures &&
      (nextRestartAt === null || nextRestartAt.getTime() <= now.getTime())
    ) {
      restarts += 1;
      nextRestartAt = new Date(
        now.getTime() + backoffMs(restarts, options.initialBackoffMs, options.maxBackoffMs),
      );
      log.warn({ failures, restarts, error: problem }, "homeserver unhealthy: restarting it");
      try {
        await this.#deps.restart(tenantId);
        restarted = true;
        this.metrics.restarts.inc();
      } catch (error) {
        log.error({ err: describeError(error) }, "homeserver restart failed");
      }
    } else {
      log.warn({ failures, error: problem }, "homeserver unhealthy");
    }
    let alerted = false;
    if (failures >= options.alertAfterFailures && alertedAt === null) {
      alertedAt = now;
      alerted = true;
      this.metrics.alerts.inc();
      log.error(
        { failures, restarts, error: problem },
        "ALERT: tenant homeserver keeps failing its health checks: operator attention needed",
      );
    }
    await this.#deps.store.write(tenantId, {
      ...before,
      status: "degraded",
      consecutiveFailures: failures,
      restarts,
      nextRestartAt,
      alertedAt,
      lastError: problem,
      lastCheckedAt: now,
    });
    return { tenantId, result: "unhealthy", error: problem, restarted, alerted };
  }

  /** null when healthy, "starting" while the driver says so, else what failed (secret-free). */
  async #probe(target: HealthTarget): Promise<string | null> {
    const { driver, probe } = this.#deps;
    try {
      const observed = await driver.inspect(target.tenantId);
      if (observed.state === "starting") return "starting";
      if (observed.state !== "running" && observed.state !== "unhealthy")
        return `homeserver is ${observed.state}${observed.detail === undefined ? "" : ` (${observed.detail})`}`;
    } catch (error) {
      return `driver cannot inspect: ${describeError(error)}`;
    }
    try {
      if (!(await probe.healthy(target.clientUrl))) return "GET /health did not answer 200";
    } catch (error) {
      return `GET /health failed: ${describeError(error)}`;
    }
    try {
      await probe.pingAppservice(target.clientUrl, target.registrationId, target.asToken);
    } catch (error) {
      return describeError(error);
    }
    return null;
  }

  /** Checks every intervalMs until stop(). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      void this.runOnce().catch((error: unknown) => {
        this.#log.error({ err: describeError(error) }, "health pass failed");
      });
    }, this.#deps.options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#pass?.catch(() => undefined);
  }
}
