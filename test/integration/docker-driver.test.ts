import { randomBytes, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConfigSchema } from "../../src/config/schema.ts";
import { createDriver } from "../../src/provisioning/create-driver.ts";
import { DockerDriver, type DockerDriverOptions } from "../../src/provisioning/docker-driver.ts";
import { databasePassword } from "../../src/provisioning/docker-stack.ts";
import type { HomeserverSpec } from "../../src/provisioning/driver.ts";
import { AppError } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { TEST_POSTGRES_URL } from "../support/database.ts";
import { FakeDockerEngine } from "../support/fake-docker.ts";

const IMAGE = "matrixdotorg/synapse:v1.160.0";
const SHARED_NETWORK = "switchboard";

let engine: FakeDockerEngine;
let logLines: string[];
let slug: string;
let spec: HomeserverSpec;
const databases: string[] = [];

function makeDriver(overrides: Partial<DockerDriverOptions> = {}): DockerDriver {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString("utf8"));
      done();
    },
  });
  return new DockerDriver({
    socketPath: engine.socketPath,
    synapseImage: IMAGE,
    network: SHARED_NETWORK,
    postgres: { adminUrl: TEST_POSTGRES_URL, host: "postgres", port: 5432 },
    logger: createLogger({ level: "debug", pretty: false, destination: sink }),
    healthTimeoutMs: 2_000,
    healthPollMs: 20,
    ...overrides,
  });
}

function registration(asToken: string, hsToken: string): string {
  return `id: switchboard\nurl: http://switchboard:9000\nas_token: ${asToken}\nhs_token: ${hsToken}\nsender_localpart: switchboard\nnamespaces:\n  users: []\n`;
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

beforeEach(async () => {
  engine = await FakeDockerEngine.start();
  logLines = [];
  slug = `acme-${randomBytes(4).toString("hex")}`;
  databases.push(`synapse_${slug.replaceAll("-", "_")}`);
  spec = {
    tenantId: randomUUID() as TenantId,
    slug,
    serverName: `${slug}.example.com`,
    publicBaseUrl: `https://${slug}.example.com/`,
    resources: { memoryMb: 512, cpus: 0.5 },
    registrationSharedSecret: `shared-${randomBytes(16).toString("hex")}`,
    appserviceRegistrations: {
      "switchboard.yaml": registration(
        `astoken-${randomBytes(12).toString("hex")}`,
        `hstoken-${randomBytes(12).toString("hex")}`,
      ),
    },
    database: "postgres",
  };
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

const creates = () =>
  engine.requestsTo("POST", /^\/(containers|networks|volumes|images)\/create$/).length;

describe("DockerDriver.ensure", () => {
  it("pulls the image and creates the tenant's network, volume, database and a limited, labelled, health-checked container", async () => {
    const driver = makeDriver();
    const endpoint = await driver.ensure(spec);
    expect(endpoint.clientUrl).toBe(`http://switchboard-${slug}-synapse:8008`);

    expect(engine.images.has(IMAGE)).toBe(true);
    expect(logLines.join("")).toContain("pulling image: progress");
    expect(engine.requestsTo("POST", /^\/images\/create$/)[0]?.url).toContain(
      "fromImage=matrixdotorg%2Fsynapse&tag=v1.160.0",
    );
    expect(engine.requests.every((r) => /^\/v1\.47\//.test(r.url))).toBe(true);

    const network = engine.networks.get(`switchboard-${slug}`);
    expect(network?.Labels).toEqual({
      "io.switchboard.tenant": spec.tenantId,
      "io.switchboard.slug": slug,
      "io.switchboard.resource": "network",
    });
    expect(engine.networks.get(SHARED_NETWORK)?.Labels).toEqual({
      "io.switchboard.resource": "shared-network",
    });
    expect(engine.volumes.get(`switchboard-${slug}-data`)?.Labels).toMatchObject({
      "io.switchboard.tenant": spec.tenantId,
      "io.switchboard.resource": "volume",
    });

    const container = engine.container(`switchboard-${slug}-synapse`);
    expect(container?.Config.Image).toBe(IMAGE);
    expect(container?.Config.Labels).toMatchObject({
      "io.switchboard.tenant": spec.tenantId,
      "io.switchboard.slug": slug,
      "io.switchboard.resource": "homeserver",
    });
    expect(container?.HostConfig).toMatchObject({
      Memory: 512 * 1024 * 1024,
      MemorySwap: 512 * 1024 * 1024,
      NanoCpus: 500_000_000,
      RestartPolicy: { Name: "unless-stopped" },
      NetworkMode: `switchboard-${slug}`,
      Mounts: [{ Type: "volume", Source: `switchboard-${slug}-data`, Target: "/srv/hs" }],
    });
    expect(container?.Config.Healthcheck).toMatchObject({
      Test: ["CMD-SHELL", "curl -fSs http://localhost:8008/health || exit 1"],
      Retries: 3,
    });
    expect(container?.NetworkingConfig).toEqual({
      EndpointsConfig: {
        [`switchboard-${slug}`]: { Aliases: ["synapse"] },
        [SHARED_NETWORK]: { Aliases: [`switchboard-${slug}-synapse`] },
      },
    });
    expect(container?.State).toMatchObject({ Status: "running", Running: true });

    // The files arrived by archive upload before the first start, private to Synapse's uid.
    const config = container?.files.get("/srv/hs/homeserver.yaml");
    expect(config).toMatchObject({ mode: 0o600, uid: 991 });
    expect(config?.content).toContain(`server_name: ${slug}.example.com`);
    expect(config?.content).toContain(spec.registrationSharedSecret);
    expect(config?.content).toContain(`dbname: synapse_${slug.replaceAll("-", "_")}`);
    expect(config?.content).toContain("host: postgres");
    expect(config?.content).toContain("/srv/hs/appservices/switchboard.yaml");
    expect(container?.files.get("/srv/hs/appservices/switchboard.yaml")?.content).toBe(
      spec.appserviceRegistrations["switchboard.yaml"],
    );
    expect(container?.files.get("/srv/hs/signing.key")?.content).toMatch(/^ed25519 a_\w{4} \S+\n$/);
    const archive = engine.requestsTo("PUT", /\/archive$/);
    const start = engine.requestsTo("POST", /\/start$/);
    expect(archive).toHaveLength(1);
    expect(engine.requests.indexOf(archive[0]!)).toBeLessThan(engine.requests.indexOf(start[0]!));

    const name = `synapse_${slug.replaceAll("-", "_")}`;
    const rows = await query<{ owner: string; collate: string; password: string }>(
      `SELECT pg_get_userbyid(d.datdba) AS owner, d.datcollate AS collate, a.rolpassword AS password
         FROM pg_database d JOIN pg_authid a ON a.rolname = $1 WHERE d.datname = $1`,
      [name],
    );
    expect(rows).toEqual([
      {
        owner: name,
        collate: "C",
        password: expect.stringMatching(/^SCRAM-SHA-256\$4096:/) as unknown,
      },
    ]);
  });

  it("creates nothing twice on a re-run and updates resources in place", async () => {
    const driver = makeDriver();
    await driver.ensure(spec);
    const id = engine.container(`switchboard-${slug}-synapse`)?.Id;
    const before = creates();
    const requestsBefore = engine.requests.length;

    await driver.ensure(spec);
    expect(creates()).toBe(before);
    const rerun = engine.requests.slice(requestsBefore);
    expect(rerun.filter((r) => r.method !== "GET")).toEqual([]);

    await driver.ensure({ ...spec, resources: { memoryMb: 2048, cpus: 2 } });
    expect(creates()).toBe(before);
    const updates = engine.requestsTo("POST", /\/update$/);
    expect(updates.map((r) => r.body)).toEqual([
      { Memory: 2048 * 1024 * 1024, MemorySwap: 2048 * 1024 * 1024, NanoCpus: 2_000_000_000 },
    ]);
    const container = engine.container(`switchboard-${slug}-synapse`);
    expect(container?.Id).toBe(id);
    expect(container?.HostConfig).toMatchObject({ Memory: 2048 * 1024 * 1024, NanoCpus: 2e9 });
    expect(engine.requestsTo("POST", /\/stop$/)).toEqual([]);
  });

  it("recreates the container (keeping the volume) when a registration changes", async () => {
    const driver = makeDriver();
    await driver.ensure(spec);
    const oldId = engine.container(`switchboard-${slug}-synapse`)?.Id;
    const changed = registration("astoken-new-value", "hstoken-new-value");
    await driver.ensure({ ...spec, appserviceRegistrations: { "switchboard.yaml": changed } });
    const container = engine.container(`switchboard-${slug}-synapse`);
    expect(container?.Id).not.toBe(oldId);
    expect(container?.files.get("/srv/hs/appservices/switchboard.yaml")?.content).toBe(changed);
    expect(engine.requestsTo("POST", /^\/volumes\/create$/)).toHaveLength(1);
    expect(engine.volumes.size).toBe(1);
  });

  it("repairs a stack after a crash between create and start, and after the container disappears", async () => {
    const driver = makeDriver();
    engine.failNext("POST", /\/start$/, 500, "driver crashed here");
    await expect(driver.ensure(spec)).rejects.toThrow(/start container failed \(HTTP 500\)/);
    expect(engine.container(`switchboard-${slug}-synapse`)?.State.Status).toBe("created");
    await driver.ensure(spec);
    expect(engine.requestsTo("POST", /^\/containers\/create$/)).toHaveLength(1);
    expect(engine.requestsTo("PUT", /\/archive$/)).toHaveLength(2);

    engine.disappear(`switchboard-${slug}-synapse`);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({ state: "stopped" });
    await driver.ensure(spec);
    expect(engine.container(`switchboard-${slug}-synapse`)?.State.Running).toBe(true);
  });

  it("waits for the health check before resolving", async () => {
    engine.healthOnStart = "starting";
    const driver = makeDriver({ healthTimeoutMs: 10_000 });
    const ensured = driver.ensure(spec);
    await vi.waitFor(() => {
      expect(engine.container(`switchboard-${slug}-synapse`)?.State.Running).toBe(true);
    });
    expect(await driver.inspect(spec.tenantId)).toMatchObject({ state: "starting" });
    engine.setHealth(`switchboard-${slug}-synapse`, "healthy");
    await expect(ensured).resolves.toEqual({
      clientUrl: `http://switchboard-${slug}-synapse:8008`,
    });
  });
});

describe("DockerDriver stop, remove, inspect", () => {
  it("maps container states and tolerates 'already'", async () => {
    const driver = makeDriver();
    const name = `switchboard-${slug}-synapse`;
    expect(await driver.inspect(spec.tenantId)).toEqual({ state: "absent" });
    await driver.ensure(spec);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({
      state: "running",
      clientUrl: `http://${name}:8008`,
      details: { image: IMAGE },
    });
    engine.setHealth(name, "unhealthy", "curl: (7) Failed to connect to localhost port 8008");
    expect(await driver.inspect(spec.tenantId)).toMatchObject({
      state: "unhealthy",
      detail: "health check failing: curl: (7) Failed to connect to localhost port 8008",
    });
    engine.exit(name, 1, true);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({
      state: "unhealthy",
      detail: /keeps exiting/,
    });
    engine.exit(name, 137);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({
      state: "stopped",
      detail: "exited (exit code 137, killed for lack of memory)",
    });

    await driver.ensure(spec);
    await driver.stop(spec.tenantId);
    await driver.stop(spec.tenantId);
    expect(engine.requestsTo("POST", /\/stop$/).map((r) => r.status)).toEqual([204, 304]);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({ state: "stopped" });

    await driver.ensure(spec);
    expect(engine.requestsTo("POST", /^\/containers\/create$/)).toHaveLength(1);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({ state: "running" });
  });

  it("removes the container, volume, network and database, and a second remove is fine", async () => {
    const driver = makeDriver();
    await driver.ensure(spec);
    await driver.remove(spec.tenantId);
    expect(engine.containers.size).toBe(0);
    expect(engine.volumes.size).toBe(0);
    expect([...engine.networks.keys()]).toEqual([SHARED_NETWORK]);
    const name = `synapse_${slug.replaceAll("-", "_")}`;
    expect(await query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).toEqual([]);
    expect(await query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name])).toEqual([]);
    await driver.remove(spec.tenantId);
    await driver.stop(spec.tenantId);
    expect(await driver.inspect(spec.tenantId)).toEqual({ state: "absent" });
  });
});

describe("DockerDriver secrets and errors", () => {
  it("puts no secret in any request URL, in Env, or in the logs", async () => {
    const driver = makeDriver();
    await driver.ensure(spec);
    await driver.ensure({ ...spec, resources: { memoryMb: 1024, cpus: 1 } });
    await driver.stop(spec.tenantId);
    await driver.inspect(spec.tenantId);
    await driver.remove(spec.tenantId);
    const registrationText = spec.appserviceRegistrations["switchboard.yaml"] ?? "";
    const secrets = [
      spec.registrationSharedSecret,
      /as_token: (\S+)/.exec(registrationText)?.[1] ?? "missing",
      /hs_token: (\S+)/.exec(registrationText)?.[1] ?? "missing",
      databasePassword(spec.registrationSharedSecret),
    ];
    const urls = engine.requests.map((r) => decodeURIComponent(r.url)).join("\n");
    const jsonBodies = engine.requests
      .filter((r) => r.body !== undefined)
      .map((r) => JSON.stringify(r.body))
      .join("\n");
    const logs = logLines.join("");
    for (const secret of secrets) {
      expect(urls).not.toContain(secret);
      expect(jsonBodies).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
    // The secrets did travel, in the archive body only.
    const archive = engine.requestsTo("PUT", /\/archive$/)[0];
    expect(archive?.rawBody.toString("utf8")).toContain(spec.registrationSharedSecret);
  });

  it("surfaces engine errors as clear AppErrors", async () => {
    engine.failNext("POST", /^\/containers\/create$/, 500, "devmapper: thin pool full");
    const error = await makeDriver()
      .ensure(spec)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({
      code: "unavailable",
      message: "docker: create container failed (HTTP 500): devmapper: thin pool full",
    });

    const badImage = makeDriver({ synapseImage: "example/does-not-exist:1" });
    await expect(badImage.ensure(spec)).rejects.toMatchObject({
      code: "bad_request",
      message: /pull example\/does-not-exist:1 failed \(HTTP 404\): pull access denied/,
    });

    const brokenPull = makeDriver({ synapseImage: "example/broken-pull:1" });
    await expect(brokenPull.ensure(spec)).rejects.toMatchObject({
      code: "unavailable",
      message: "docker: pull example/broken-pull:1 failed: unexpected EOF",
    });

    const nowhere = makeDriver({ socketPath: `${engine.socketPath}.missing` });
    await expect(nowhere.inspect(spec.tenantId)).rejects.toMatchObject({
      code: "unavailable",
      message: /engine unreachable/,
    });

    engine.healthOnStart = "unhealthy";
    const unhealthy = makeDriver({ healthTimeoutMs: 200 });
    await expect(unhealthy.ensure(spec)).rejects.toMatchObject({
      code: "unavailable",
      message: /not healthy after 0 s \(health: unhealthy\)/,
    });

    await expect(makeDriver().ensure({ ...spec, slug: "Not A Slug" })).rejects.toMatchObject({
      code: "bad_request",
      message: /slug "Not A Slug"/,
    });
  });
});

describe("createDriver with provisioning.driver docker", () => {
  it("builds the docker driver from config; without provisioning.docker.postgres homeservers use SQLite", async () => {
    const config = ConfigSchema.parse({
      provisioning: { driver: "docker", docker: { socketPath: engine.socketPath } },
    });
    expect(config.provisioning.docker).toMatchObject({
      synapseImage: "matrixdotorg/synapse:v1.160.0",
      network: "switchboard",
    });
    const driver = await createDriver(config, createLogger({ level: "silent", pretty: false }));
    expect(driver.name).toBe("docker");
    await expect(driver.ensure(spec)).rejects.toMatchObject({
      code: "bad_request",
      message: /provisioning\.docker\.postgres/,
    });
    engine.images.add(IMAGE);
    await driver.ensure({ ...spec, database: "sqlite" });
    const config_ = engine
      .container(`switchboard-${slug}-synapse`)
      ?.files.get("/srv/hs/homeserver.yaml");
    expect(config_?.content).toContain("database: /srv/hs/homeserver.db");
    expect(config_?.content).toContain(`public_baseurl: https://${slug}.example.com/`);
    expect(engine.requestsTo("POST", /^\/images\/create$/)).toEqual([]);
  });
});
