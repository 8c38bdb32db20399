import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigSchema } from "../../src/config/schema.ts";
import { ComposeDriver } from "../../src/provisioning/compose-driver.ts";
import { createDriver } from "../../src/provisioning/create-driver.ts";
import type { HomeserverSpec } from "../../src/provisioning/driver.ts";
import { AppError } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { TEST_POSTGRES_URL } from "../support/database.ts";

/**
 * The compose driver writes Synapse's and the bridges' files into the
 * volumes docker-compose.yml shares with them, and makes their databases on
 * the real PostgreSQL server. (The supervisor that reacts to the files is
 * tested in compose-supervisor.test.ts.)
 */

let filesDir: string;
let driver: ComposeDriver;
let spec: HomeserverSpec;

async function databaseExists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    const result = await client.query("select 1 from pg_database where datname = $1", [name]);
    return result.rowCount === 1;
  } finally {
    await client.end();
  }
}

function registration(token: string): string {
  return `id: switchboard\nurl: http://switchboard:9000\nas_token: ${token}\nhs_token: hs-${token}\nsender_localpart: switchboard\nnamespaces:\n  users: []\n`;
}

beforeEach(async () => {
  filesDir = await mkdtemp(join(tmpdir(), "compose-driver-"));
  driver = new ComposeDriver({
    filesDir,
    homeserverUrl: "http://127.0.0.1:9",
    postgres: { adminUrl: TEST_POSTGRES_URL, host: "postgres", port: 5432 },
    logger: createLogger({ level: "silent", pretty: false }),
  });
  const slug = `c${randomBytes(4).toString("hex")}`;
  spec = {
    tenantId: randomUUID() as TenantId,
    slug,
    serverName: `${slug}.example.org`,
    resources: { memoryMb: 512, cpus: 1 },
    registrationSharedSecret: randomBytes(32).toString("base64url"),
    appserviceRegistrations: { "switchboard.yaml": registration("one") },
    database: "sqlite",
  };
});

afterEach(async () => {
  await driver.remove(spec.tenantId);
  await rm(filesDir, { recursive: true, force: true });
});

describe("ComposeDriver homeserver", () => {
  it("writes Synapse's files (private), its database, and the ready marker last", async () => {
    const endpoint = await driver.ensure(spec);
    expect(endpoint.clientUrl).toBe("http://127.0.0.1:9");
    const dir = join(filesDir, "synapse");
    const config = await readFile(join(dir, "homeserver.yaml"), "utf8");
    expect(config).toContain(`server_name: ${spec.serverName}`);
    expect(config).toContain("/srv/hs/appservices/switchboard.yaml");
    // Compose homeservers always use the shared PostgreSQL, never SQLite in a volume.
    expect(config).toContain("psycopg2");
    expect(await readFile(join(dir, "appservices", "switchboard.yaml"), "utf8")).toContain(
      "as_token: one",
    );
    expect((await stat(join(dir, "homeserver.yaml"))).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dir, "ready"))).toBe(true);
    expect(await databaseExists(`synapse_${spec.slug}`)).toBe(true);
  });

  it("changes the ready marker only when a file changes (that restarts Synapse)", async () => {
    await driver.ensure(spec);
    const marker = join(filesDir, "synapse", "ready");
    const first = await readFile(marker, "utf8");
    await driver.ensure(spec);
    expect(await readFile(marker, "utf8")).toBe(first);
    await driver.ensure({
      ...spec,
      appserviceRegistrations: {
        ...spec.appserviceRegistrations,
        "bridge-slack.yaml": registration("slack"),
      },
    });
    expect(await readFile(marker, "utf8")).not.toBe(first);
  });

  it("runs one tenant only: a second one is refused with a clear error", async () => {
    await driver.ensure(spec);
    const other = { ...spec, tenantId: randomUUID() as TenantId, slug: "other" };
    const refusal = await driver.ensure(other).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(AppError);
    expect((refusal as AppError).code).toBe("bad_request");
    expect((refusal as AppError).message).toMatch(/one tenant/);
    expect(await driver.listTenants()).toEqual([spec.tenantId]);
  });

  it("stops through a marker, resumes on ensure, and removes files and database", async () => {
    await driver.ensure(spec);
    await driver.stop(spec.tenantId);
    expect(await driver.inspect(spec.tenantId)).toMatchObject({ state: "stopped" });
    await driver.ensure(spec);
    expect(existsSync(join(filesDir, "synapse", "stopped"))).toBe(false);
    // Nothing answers on the configured URL here: running files, unhealthy service.
    expect((await driver.inspect(spec.tenantId)).state).toBe("unhealthy");

    await driver.remove(spec.tenantId);
    expect(await driver.inspect(spec.tenantId)).toEqual({ state: "absent" });
    expect(existsSync(join(filesDir, "synapse", "homeserver.yaml"))).toBe(false);
    expect(await databaseExists(`synapse_${spec.slug}`)).toBe(false);
    expect(await driver.listTenants()).toEqual([]);
  });
});

describe("ComposeDriver bridges", () => {
  it("places the bridge at its compose service, writes its files and database, stops and removes it", async () => {
    await driver.ensure(spec);
    const target = { tenantId: spec.tenantId, slug: spec.slug, network: "slack" as const };
    const databaseSecret = randomBytes(32).toString("base64url");
    const placement = await driver.placement({ ...target, databaseSecret });
    expect(placement).toMatchObject({
      listenHost: "0.0.0.0",
      listenPort: 29335,
      appserviceUrl: "http://mautrix-slack:29335",
      provisioningUrl: "http://mautrix-slack:29335",
      homeserverUrl: "http://127.0.0.1:9",
      database: { type: "postgres" },
    });
    expect(placement.database.uri).toMatch(
      new RegExp(
        `^postgres://bridge_${spec.slug}_slack:[^@]+@postgres:5432/bridge_${spec.slug}_slack`,
      ),
    );
    expect(await driver.inspectBridge(target)).toEqual({ state: "absent" });

    await driver.ensureBridge({
      ...target,
      databaseSecret,
      configYaml: "homeserver:\n  domain: x\n",
      registrationYaml: registration("slack"),
    });
    const dir = join(filesDir, "bridges", "slack");
    expect(await readFile(join(dir, "config.yaml"), "utf8")).toContain("domain: x");
    expect((await stat(join(dir, "config.yaml"))).mode & 0o777).toBe(0o600);
    expect(await driver.inspectBridge(target)).toEqual({ state: "running" });
    expect(await databaseExists(`bridge_${spec.slug}_slack`)).toBe(true);

    await driver.stopBridge(target);
    expect(await driver.inspectBridge(target)).toEqual({ state: "stopped" });
    await driver.removeBridge(target);
    expect(await driver.inspectBridge(target)).toEqual({ state: "absent" });
    expect(existsSync(join(dir, "config.yaml"))).toBe(false);
    expect(await databaseExists(`bridge_${spec.slug}_slack`)).toBe(false);
  });
});

describe("createDriver compose", () => {
  it("builds the compose driver, with its bridges, from the config", async () => {
    const config = ConfigSchema.parse({
      database: { url: TEST_POSTGRES_URL },
      provisioning: { driver: "compose", compose: { filesDir } },
    });
    const built = await createDriver(config, createLogger({ level: "silent", pretty: false }));
    expect(built).toBeInstanceOf(ComposeDriver);
    expect(built.bridges).toBe(built);
  });

  it("refuses without PostgreSQL, naming what to set", async () => {
    const config = ConfigSchema.parse({ provisioning: { driver: "compose" } });
    const refusal = await createDriver(
      config,
      createLogger({ level: "silent", pretty: false }),
    ).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(AppError);
    expect((refusal as AppError).message).toMatch(/DATABASE_URL/);
  });
});
