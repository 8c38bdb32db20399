import { randomBytes, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BridgeNetwork } from "../../src/bridges/networks.ts";
import type { BridgeSpec } from "../../src/provisioning/bridge-driver.ts";
import { bridgeDatabasePassword } from "../../src/provisioning/docker-bridges.ts";
import { DockerDriver } from "../../src/provisioning/docker-driver.ts";
import type { HomeserverSpec } from "../../src/provisioning/driver.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { TEST_POSTGRES_URL } from "../support/database.ts";
import { FakeDockerEngine } from "../support/fake-docker.ts";

const SYNAPSE_IMAGE = "matrixdotorg/synapse:v1.160.0";
const SLACK_IMAGE = "registry.example.com/mautrix/slack:v26.08-custom";
const SHARED_NETWORK = "switchboard";
const MIB = 1024 * 1024;

let engine: FakeDockerEngine;
let logLines: string[];
let driver: DockerDriver;
let homeserver: HomeserverSpec;
let slug: string;
const databases: string[] = [];

function makeDriver(): DockerDriver {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString("utf8"));
      done();
    },
  });
  return new DockerDriver({
    socketPath: engine.socketPath,
    synapseImage: SYNAPSE_IMAGE,
    bridgeImages: {
      slack: SLACK_IMAGE,
      discord: "dock.mau.dev/mautrix/discord:v0.7.7",
      telegram: "dock.mau.dev/mautrix/telegram:v26.08",
    },
    network: SHARED_NETWORK,
    postgres: { adminUrl: TEST_POSTGRES_URL, host: "postgres", port: 5432 },
    logger: createLogger({ level: "debug", pretty: false, destination: sink }),
    healthTimeoutMs: 2_000,
    healthPollMs: 20,
  });
}

async function query<T extends pg.QueryResultRow>(sql: string, values: unknown[]): Promise<T[]> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

async function databaseExists(name: string): Promise<boolean> {
  return (await query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).length > 0;
}

function bridgeSpec(network: BridgeNetwork, configExtra = ""): BridgeSpec & { secrets: string[] } {
  const asToken = `as-${randomBytes(16).toString("hex")}`;
  const hsToken = `hs-${randomBytes(16).toString("hex")}`;
  const databaseSecret = `db-${randomBytes(16).toString("hex")}`;
  return {
    tenantId: homeserver.tenantId,
    slug,
    network,
    databaseSecret,
    configYaml: `appservice:\n  as_token: ${asToken}\n  hs_token: ${hsToken}\n${configExtra}`,
    registrationYaml: `id: switchboard-${network}\nas_token: ${asToken}\nhs_token: ${hsToken}\n`,
    secrets: [asToken, hsToken, databaseSecret, bridgeDatabasePassword(databaseSecret)],
  };
}

beforeEach(async () => {
  engine = await FakeDockerEngine.start({ images: [SYNAPSE_IMAGE] });
  logLines = [];
  slug = `br-${randomBytes(4).toString("hex")}`;
  const underscored = slug.replaceAll("-", "_");
  databases.push(`synapse_${underscored}`, `br_${underscored}_slack`, `br_${underscored}_telegram`);
  homeserver = {
    tenantId: randomUUID() as TenantId,
    slug,
    serverName: `${slug}.example.com`,
    resources: { memoryMb: 512, cpus: 0.5 },
    registrationSharedSecret: `shared-${randomBytes(16).toString("hex")}`,
    appserviceRegistrations: { "switchboard.yaml": "id: switchboard\n" },
    database: "postgres",
  };
  driver = makeDriver();
  // Bridges come after their homeserver (its network exists then).
  await driver.ensure(homeserver);
});
afterEach(async () => {
  await engine.close();
});
afterAll(async () => {
  for (const name of databases) {
    await query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`, []);
    await query(`DROP ROLE IF EXISTS "${name}"`, []);
  }
});

describe("DockerBridges", () => {
  it("places a bridge on the tenant's network, reaching Synapse by name, with its own PostgreSQL database", async () => {
    const spec = bridgeSpec("slack");
    const placement = await driver.bridges.placement(spec);
    const database = `br_${slug.replaceAll("-", "_")}_slack`;
    expect(placement).toMatchObject({
      listenHost: "0.0.0.0",
      listenPort: 29335,
      appserviceUrl: `http://switchboard-${slug}-slack:29335`,
      provisioningUrl: `http://switchboard-${slug}-slack:29335`,
      homeserverUrl: `http://switchboard-${slug}-synapse:8008`,
    });
    expect(placement.database).toEqual({
      type: "postgres",
      uri: `postgres://${database}:${bridgeDatabasePassword(spec.databaseSecret)}@postgres:5432/${database}?sslmode=disable`,
    });
    // Placement only names things.
    expect(await databaseExists(database)).toBe(false);
    expect(engine.containers.size).toBe(1);
  });

  it("creates a labelled, limited container from the configured image with its files in its volume and no secret in a URL, Env or log", async () => {
    const spec = bridgeSpec("slack");
    await driver.bridges.ensureBridge(spec);

    const container = engine.container(`switchboard-${slug}-slack`);
    expect(container?.Config.Image).toBe(SLACK_IMAGE);
    expect(engine.images.has(SLACK_IMAGE)).toBe(true);
    expect(container?.Config.Labels).toMatchObject({
      "io.switchboard.tenant": homeserver.tenantId,
      "io.switchboard.slug": slug,
      "io.switchboard.resource": "bridge",
      "io.switchboard.bridge": "slack",
    });
    expect(container?.HostConfig).toMatchObject({
      RestartPolicy: { Name: "unless-stopped" },
      NetworkMode: `switchboard-${slug}`,
      Memory: 256 * MIB,
      MemorySwap: 256 * MIB,
      Mounts: [{ Type: "volume", Source: `switchboard-${slug}-slack-data`, Target: "/data" }],
    });
    expect(
      Object.keys(
        (container?.NetworkingConfig?.EndpointsConfig ?? {}) as Record<string, unknown>,
      ).sort(),
    ).toEqual([SHARED_NETWORK, `switchboard-${slug}`].sort());
    expect(container?.Config.Env).toBeUndefined();
    expect(container?.Config.Cmd).toEqual([
      "/bin/sh",
      "-c",
      expect.stringContaining(
        'su-exec 1337:1337 "$0" -c config.yaml -r registration.yaml --no-update',
      ),
      "/usr/bin/mautrix-slack",
    ]);
    expect(container?.State.Running).toBe(true);
    expect(container?.files.get("/data/config.yaml")).toEqual({
      content: spec.configYaml,
      mode: 0o600,
      uid: 1337,
    });
    expect(container?.files.get("/data/registration.yaml")?.content).toBe(spec.registrationYaml);
    expect(engine.volumes.get(`switchboard-${slug}-slack-data`)?.Labels).toMatchObject({
      "io.switchboard.tenant": homeserver.tenantId,
      "io.switchboard.bridge": "slack",
    });
    expect(await databaseExists(`br_${slug.replaceAll("-", "_")}_slack`)).toBe(true);
    expect(await driver.bridges.inspectBridge(spec)).toEqual({ state: "running" });

    const urls = engine.requests.map((request) => request.url).join("\n");
    const jsonBodies = engine.requests
      .map((request) => JSON.stringify(request.body ?? {}))
      .join("\n");
    const logs = logLines.join("");
    for (const secret of spec.secrets) {
      expect(urls).not.toContain(secret);
      expect(jsonBodies).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });

  it("is idempotent, recreates the container when its files change, and keeps the volume", async () => {
    const spec = bridgeSpec("slack");
    await driver.bridges.ensureBridge(spec);
    const first = engine.container(`switchboard-${slug}-slack`)?.Id;
    const createsBefore = engine.requestsTo("POST", /^\/containers\/create$/).length;

    await driver.bridges.ensureBridge(spec);
    expect(engine.requestsTo("POST", /^\/containers\/create$/)).toHaveLength(createsBefore);
    expect(engine.container(`switchboard-${slug}-slack`)?.Id).toBe(first);

    const changed = { ...spec, configYaml: `${spec.configYaml}bridge:\n  default_relays: [T1]\n` };
    await driver.bridges.ensureBridge(changed);
    const second = engine.container(`switchboard-${slug}-slack`);
    expect(second?.Id).not.toBe(first);
    expect(second?.State.Running).toBe(true);
    expect(second?.files.get("/data/config.yaml")?.content).toBe(changed.configYaml);
    expect(engine.volumes.has(`switchboard-${slug}-slack-data`)).toBe(true);

    // A container that died is started again by the next ensure.
    engine.exit(`switchboard-${slug}-slack`, 1);
    expect((await driver.bridges.inspectBridge(spec)).state).toBe("stopped");
    await driver.bridges.ensureBridge(changed);
    expect(engine.container(`switchboard-${slug}-slack`)?.State.Running).toBe(true);
  });

  it("stops a bridge keeping its data, and removes it with its volume and database", async () => {
    const spec = bridgeSpec("slack");
    await driver.bridges.ensureBridge(spec);
    await driver.bridges.stopBridge(spec);
    expect((await driver.bridges.inspectBridge(spec)).state).toBe("stopped");
    await driver.bridges.stopBridge(spec);

    await driver.bridges.removeBridge(spec);
    expect(await driver.bridges.inspectBridge(spec)).toEqual({ state: "absent" });
    expect(engine.container(`switchboard-${slug}-slack`)).toBeUndefined();
    expect(engine.volumes.has(`switchboard-${slug}-slack-data`)).toBe(false);
    expect(await databaseExists(`br_${slug.replaceAll("-", "_")}_slack`)).toBe(false);
    // Absent is fine.
    await driver.bridges.removeBridge(spec);
    await driver.bridges.stopBridge(spec);
    // The homeserver is untouched.
    expect(engine.container(`switchboard-${slug}-synapse`)?.State.Running).toBe(true);
  });

  it("the tenant's removal takes its bridges along: containers, volumes and databases", async () => {
    await driver.bridges.ensureBridge(bridgeSpec("slack"));
    await driver.bridges.ensureBridge(bridgeSpec("telegram"));
    expect(engine.containers.size).toBe(3);

    await driver.remove(homeserver.tenantId);
    expect(engine.containers.size).toBe(0);
    expect([...engine.volumes.keys()]).toEqual([]);
    expect([...engine.networks.keys()]).toEqual([SHARED_NETWORK]);
    const underscored = slug.replaceAll("-", "_");
    for (const name of [
      `synapse_${underscored}`,
      `br_${underscored}_slack`,
      `br_${underscored}_telegram`,
    ])
      expect(await databaseExists(name)).toBe(false);
    expect(await driver.inspect(homeserver.tenantId)).toEqual({ state: "absent" });
  });
});
