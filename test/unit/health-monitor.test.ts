import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { HomeserverObservation } from "../../src/provisioning/driver.ts";
import {
  HEALTHY,
  HealthMonitor,
  type HealthOptions,
  type HealthRecord,
  type HealthStore,
  type HealthTarget,
} from "../../src/provisioning/health.ts";
import { matrixProbe } from "../../src/provisioning/homeserver-checks.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";

const TENANT = "00000000-0000-4000-8000-000000000001" as TenantId;
const AS_TOKEN = "as-token-secret";
const OPTIONS: HealthOptions = {
  intervalMs: 60_000,
  restartAfterFailures: 2,
  alertAfterFailures: 4,
  initialBackoffMs: 1_000,
  maxBackoffMs: 8_000,
};

/** A homeserver's /health and appservice ping, switchable; records the pings. */
class FakeHomeserver {
  health = 200;
  ping = 200;
  readonly pings: { url: string; authorization: string | undefined }[] = [];
  readonly server: Server = createServer((request, response) => {
    if (request.url === "/health") {
      response.writeHead(this.health).end("OK");
      return;
    }
    if (request.method === "POST" && request.url?.includes("/appservice/") === true) {
      this.pings.push({ url: request.url, authorization: request.headers.authorization });
      response
        .writeHead(this.ping, { "content-type": "application/json" })
        .end(
          this.ping === 200
            ? JSON.stringify({ duration_ms: 3 })
            : JSON.stringify({ errcode: "M_CONNECTION_FAILED", error: "runtime unreachable" }),
        );
      return;
    }
    response.writeHead(404).end();
  });
  url(): string {
    return `http://127.0.0.1:${String((this.server.address() as AddressInfo).port)}`;
  }
}

/** Records every driver call; plays the state it is told. */
class RecordingDriver {
  state: HomeserverObservation["state"] = "running";
  readonly calls: string[] = [];
  inspect(tenantId: TenantId): Promise<HomeserverObservation> {
    this.calls.push(`inspect ${tenantId}`);
    return Promise.resolve({ state: this.state });
  }
}

class MemoryStore implements HealthStore {
  readonly list: HealthTarget[];
  constructor(list: HealthTarget[]) {
    this.list = list;
  }
  readonly records = new Map<TenantId, HealthRecord>();
  targets(): Promise<HealthTarget[]> {
    return Promise.resolve(this.list);
  }
  read(tenantId: TenantId): Promise<HealthRecord> {
    return Promise.resolve(this.records.get(tenantId) ?? HEALTHY);
  }
  write(tenantId: TenantId, record: HealthRecord): Promise<void> {
    this.records.set(tenantId, record);
    return Promise.resolve();
  }
  countDegraded(): Promise<number> {
    return Promise.resolve(
      [...this.records.values()].filter((r) => r.status === "degraded").length,
    );
  }
}

describe("homeserver health monitor", () => {
  const homeserver = new FakeHomeserver();
  let driver: RecordingDriver;
  let store: MemoryStore;
  let monitor: HealthMonitor;
  let restarts: { tenantId: TenantId; at: number }[];
  let clock: number;

  beforeAll(async () => {
    await new Promise<void>((resolve) => homeserver.server.listen(0, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => homeserver.server.close(resolve));
  });
  beforeEach(() => {
    homeserver.health = 200;
    homeserver.ping = 200;
    driver = new RecordingDriver();
    store = new MemoryStore([
      {
        tenantId: TENANT,
        slug: "acme",
        clientUrl: homeserver.url(),
        registrationId: "switchboard-acme",
        asToken: AS_TOKEN,
      },
    ]);
    restarts = [];
    clock = Date.parse("2026-11-22T00:00:00Z");
    monitor = new HealthMonitor({
      driver,
      probe: matrixProbe,
      store,
      restart: (tenantId) => {
        restarts.push({ tenantId, at: clock });
        return Promise.resolve();
      },
      log: createLogger({ level: "silent", pretty: false }),
      options: OPTIONS,
      now: () => new Date(clock),
    });
  });

  const metric = async (name: string): Promise<number> => {
    const found = (await monitor.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
    return found?.values.reduce((sum, value) => sum + value.value, 0) ?? 0;
  };

  it("a healthy homeserver passes /health and the appservice ping with its as_token", async () => {
    const [outcome] = await monitor.runOnce();
    expect(outcome).toMatchObject({ result: "healthy", restarted: false, alerted: false });
    expect(homeserver.pings.at(-1)).toEqual({
      url: "/_matrix/client/v1/appservice/switchboard-acme/ping",
      authorization: `Bearer ${AS_TOKEN}`,
    });
    expect(store.records.get(TENANT)?.status).toBe("healthy");
    expect(driver.calls).toEqual([`inspect ${TENANT}`]);
  });

  it("restarts with doubling backoff, alerts once after N failures, and recovery clears degraded", async () => {
    homeserver.ping = 502;
    const tick = async (advanceMs: number) => {
      clock += advanceMs;
      const [outcome] = await monitor.runOnce();
      return outcome;
    };
    // First failure: degraded, no restart yet (one blip restarts nothing).
    expect(await tick(0)).toMatchObject({ result: "unhealthy", restarted: false });
    expect(store.records.get(TENANT)?.status).toBe("degraded");
    expect(store.records.get(TENANT)?.lastError).toContain("M_CONNECTION_FAILED");
    expect(await metric("switchboard_homeservers_degraded")).toBe(1);
    // Second: restart now; the next is allowed 1 s later, then 2 s, then 4 s.
    expect(await tick(100)).toMatchObject({ restarted: true });
    expect(await tick(500)).toMatchObject({ restarted: false });
    expect(await tick(500)).toMatchObject({ restarted: true, alerted: true });
    expect(await tick(1_000)).toMatchObject({ restarted: false, alerted: false });
    expect(await tick(1_000)).toMatchObject({ restarted: true, alerted: false });
    expect(restarts.map((r) => r.at - restarts[0]!.at)).toEqual([0, 1_000, 3_000]);
    expect(await metric("switchboard_homeserver_alerts_total")).toBe(1);
    expect(await metric("switchboard_homeserver_restarts_total")).toBe(3);

    homeserver.ping = 200;
    expect(await tick(100)).toMatchObject({ result: "healthy" });
    expect(store.records.get(TENANT)).toMatchObject({
      status: "healthy",
      consecutiveFailures: 0,
      restarts: 0,
      alertedAt: null,
      nextRestartAt: null,
    });
    expect(await metric("switchboard_homeservers_degraded")).toBe(0);
    // A new streak alerts again.
    homeserver.health = 503;
    for (let i = 0; i < OPTIONS.alertAfterFailures; i += 1) await tick(10_000);
    expect(await metric("switchboard_homeserver_alerts_total")).toBe(2);
    expect(store.records.get(TENANT)?.lastError).toBe("GET /health did not answer 200");
  });

  it("counts a stopped stack as unhealthy and leaves a starting one alone", async () => {
    const pings = homeserver.pings.length;
    driver.state = "starting";
    expect((await monitor.runOnce())[0]?.result).toBe("starting");
    expect(store.records.size).toBe(0);
    driver.state = "stopped";
    expect((await monitor.runOnce())[0]).toMatchObject({
      result: "unhealthy",
      error: "homeserver is stopped",
    });
    // The driver said enough: no probe reached the homeserver.
    expect(homeserver.pings).toHaveLength(pings);
  });
});
