import { Counter, Histogram, type Registry } from "prom-client";
import { renderBridge } from "../bridges/config-render.ts";
import { createRelayLoginClient } from "../bridges/relay-login.ts";
import type { App } from "../main.ts";
import { MatrixBootstrapper, type TenantBootstrapper } from "./bootstrap.ts";
import type { BridgeDriver } from "./bridge-driver.ts";
import {
  BridgeReconciler,
  type RelayLoginClientFactory,
  type RenderBridge,
} from "./bridge-reconciler.ts";
import { createDriver } from "./create-driver.ts";
import type { HomeserverDriver } from "./driver.ts";
import { matrixProbe, type HomeserverProbe } from "./homeserver-checks.ts";
import { Reconciler, type ReconcilerOptions } from "./reconciler.ts";
import { HealthMonitor } from "./health.ts";
import { databaseHealthStore, requestReprovision } from "./health-store.ts";

/** Seams for tests: a fake driver, probe or bootstrapper, faster timings. */
export interface ProvisionerOverrides {
  readonly driver?: HomeserverDriver;
  readonly probe?: HomeserverProbe;
  readonly bootstrapper?: TenantBootstrapper;
  /** Runs bridges instead of the driver's own (driver.bridges). */
  readonly bridgeDriver?: BridgeDriver;
  readonly renderBridge?: RenderBridge;
  readonly relayLogin?: RelayLoginClientFactory;
  readonly options?: Partial<ReconcilerOptions>;
  readonly now?: () => Date;
}

/** The provisioner process (`switchboard provisioner`, and inside `switchboard start`). */
export interface Provisioner {
  readonly reconciler: Reconciler;
  readonly driver: HomeserverDriver;
  /** Restarts unhealthy homeservers and marks them degraded (health.ts). */
  readonly health: HealthMonitor;
  start(): void;
  /** Stops the loop, then the driver (the local driver stops its homeservers). */
  stop(): Promise<void>;
}

export async function createProvisioner(
  app: App,
  overrides: ProvisionerOverrides = {},
): Promise<Provisioner> {
  const { config } = app;
  const log = app.log.child({ module: "provisioner" });
  const driver = overrides.driver ?? (await createDriver(config, log));
  const db = app.database.knex;
  const registry = app.runtime.metrics.registry;
  const { steps, stepSeconds } = provisioningMetrics(registry);
  const options = { ...config.provisioning, ...overrides.options };
  const bridgeDriver = overrides.bridgeDriver ?? driver.bridges;
  const bridges =
    bridgeDriver === undefined
      ? undefined
      : new BridgeReconciler({
          db,
          cipher: app.cipher,
          driver: bridgeDriver,
          render: overrides.renderBridge ?? renderBridge,
          loginClient: overrides.relayLogin ?? createRelayLoginClient,
          relayLocalpart: config.runtime.relayLocalpart,
          readyTimeoutMs: config.bridges.readyTimeoutMs,
          ...(config.bridges.publicMediaUrl === undefined
            ? {}
            : { publicMediaUrl: config.bridges.publicMediaUrl }),
          initialBackoffMs: options.initialBackoffMs,
          maxBackoffMs: options.maxBackoffMs,
          log,
          ...(overrides.now === undefined ? {} : { now: overrides.now }),
        });
  const reconciler = new Reconciler({
    db,
    cipher: app.cipher,
    driver,
    tenants: app.tenantRepository,
    entitlements: app.entitlements,
    probe: overrides.probe ?? matrixProbe,
    bootstrapper:
      overrides.bootstrapper ??
      new MatrixBootstrapper({
        db,
        cipher: app.cipher,
        tenants: app.tenants,
        agents: app.agents,
        entitlements: app.entitlements,
        botLocalpart: config.runtime.botLocalpart,
      }),
    registrationYaml: (homeserver) => app.registrationYaml(homeserver),
    ...(bridges === undefined ? {} : { bridges }),
    log,
    options,
    ...(overrides.now === undefined ? {} : { now: overrides.now }),
    // A runtime in this process must stop using the homeserver's old address.
    onHomeserverChanged: (tenantId) => {
      app.runtime.registry.forget(tenantId);
    },
    onStep: (step, outcome, durationMs) => {
      steps.inc({ step, outcome });
      stepSeconds.observe({ step }, durationMs / 1000);
    },
  });
  const health = new HealthMonitor({
    driver,
    probe: overrides.probe ?? matrixProbe,
    store: databaseHealthStore(db, app.tenantRepository),
    // Stopped here, started again by the reconciler's next pass (its ensure),
    // so the spec is built in one place.
    restart: async (tenantId) => {
      await driver.stop(tenantId);
      await requestReprovision(db, tenantId);
      reconciler.trigger();
    },
    log,
    options: {
      ...config.provisioning.health,
      alertAfterFailures: config.provisioning.alertAfterFailures,
      initialBackoffMs: config.provisioning.initialBackoffMs,
      maxBackoffMs: config.provisioning.maxBackoffMs,
    },
    registry,
  });
  return {
    reconciler,
    driver,
    health,
    start: () => {
      reconciler.start();
      health.start();
      // The backup schedule runs where the homeservers' databases are.
      app.backups.start();
    },
    stop: async () => {
      await app.backups.stop();
      await health.stop();
      await reconciler.stop();
      await driver.close?.();
    },
  };
}

interface ProvisioningMetrics {
  readonly steps: Counter;
  readonly stepSeconds: Histogram;
}

/** One set per registry: several provisioners may share one app (tests). */
const metricsByRegistry = new WeakMap<Registry, ProvisioningMetrics>();

function provisioningMetrics(registry: Registry): ProvisioningMetrics {
  const existing = metricsByRegistry.get(registry);
  if (existing !== undefined) return existing;
  const metrics: ProvisioningMetrics = {
    steps: new Counter({
      name: "switchboard_provisioning_steps_total",
      help: "Provisioning steps by step and outcome",
      labelNames: ["step", "outcome"],
      registers: [registry],
    }),
    stepSeconds: new Histogram({
      name: "switchboard_provisioning_step_seconds",
      help: "Duration of provisioning steps",
      labelNames: ["step"],
      buckets: [0.05, 0.25, 1, 5, 15, 60, 180],
      registers: [registry],
    }),
  };
  metricsByRegistry.set(registry, metrics);
  return metrics;
}
