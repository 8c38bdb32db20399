import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { AppError } from "../../src/shared/errors.ts";
import { registrationMac } from "../../src/synapse/admin-api.ts";
import {
  clientUrlFor,
  renderHomeserverConfig,
  validateHomeserverSpec,
  type HomeserverSecrets,
  type HomeserverSpec,
} from "../../src/synapse/homeserver-config.ts";
import {
  loadOrCreateSecrets,
  readLogTail,
  writeRegistrations,
} from "../../src/synapse/homeserver-data-dir.ts";

const TEMPLATE_PATH = new URL("../../synapse/homeserver.yaml", import.meta.url);
const LOG_CONFIG_PATH = new URL("../../synapse/log.yaml", import.meta.url);

const secrets: HomeserverSecrets = { macaroonSecretKey: "macaroon-key", formSecret: "form-secret" };

function spec(overrides: Partial<HomeserverSpec> = {}): HomeserverSpec {
  return {
    serverName: "acme.example",
    bindHost: "127.0.0.1",
    port: 18008,
    dataDir: "/var/lib/switchboard/homeservers/acme",
    database: { kind: "sqlite" },
    registrationSharedSecret: "a-shared-secret-of-some-length",
    appserviceRegistrations: {
      "switchboard.yaml": "id: switchboard\n",
      "bridge.yaml": "id: bridge\n",
    },
    ...overrides,
  };
}

async function render(overrides: Partial<HomeserverSpec> = {}): Promise<Record<string, unknown>> {
  const template = await readFile(TEMPLATE_PATH, "utf8");
  return parse(renderHomeserverConfig(template, spec(overrides), secrets)) as Record<
    string,
    unknown
  >;
}

function expectAppError(run: () => unknown, code: string, message: RegExp): void {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe(code);
    expect((error as AppError).message).toMatch(message);
    return;
  }
  throw new Error("expected an AppError");
}

describe("homeserver config", () => {
  it("keeps the template's defaults", async () => {
    const config = await render();
    expect(config).toMatchObject({
      enable_registration: false,
      report_stats: false,
      trusted_key_servers: [],
      suppress_key_server_warning: true,
      use_appservice_legacy_authorization: false,
      presence: { enabled: false },
      url_preview_enabled: false,
      max_upload_size: "50M",
    });
    expect(config.rc_message).toEqual({ per_second: 50, burst_count: 300 });
    // Synapse 1.160 warns that disabling stats breaks the room directory.
    expect(config).not.toHaveProperty("stats");
  });

  it("sets the per-homeserver keys with paths inside the chroot", async () => {
    const config = await render();
    expect(config).toMatchObject({
      server_name: "acme.example",
      public_baseurl: "http://127.0.0.1:18008/",
      pid_file: "/srv/hs/homeserver.pid",
      log_config: "/srv/hs/log.yaml",
      media_store_path: "/srv/hs/media_store",
      signing_key_path: "/srv/hs/signing.key",
      registration_shared_secret: "a-shared-secret-of-some-length",
      macaroon_secret_key: "macaroon-key",
      form_secret: "form-secret",
      database: { name: "sqlite3", args: { database: "/srv/hs/homeserver.db" } },
      // Sorted, so that the rendered file does not change with insertion order.
      app_service_config_files: [
        "/srv/hs/appservices/bridge.yaml",
        "/srv/hs/appservices/switchboard.yaml",
      ],
    });
    expect(config.listeners).toEqual([
      {
        port: 18008,
        bind_addresses: ["127.0.0.1"],
        type: "http",
        tls: false,
        x_forwarded: false,
        resources: [{ names: ["client"], compress: false }],
      },
    ]);
  });

  it("uses the given public base URL", async () => {
    const config = await render({ publicBaseUrl: "https://matrix.acme.example/" });
    expect(config.public_baseurl).toBe("https://matrix.acme.example/");
  });

  it("renders a PostgreSQL database, leaving out an absent password", async () => {
    const withoutPassword = await render({
      database: {
        kind: "postgres",
        host: "127.0.0.1",
        port: 5432,
        user: "synapse",
        database: "hs_acme",
      },
    });
    expect(withoutPassword.database).toEqual({
      name: "psycopg2",
      args: {
        user: "synapse",
        dbname: "hs_acme",
        host: "127.0.0.1",
        port: 5432,
        cp_min: 1,
        cp_max: 5,
      },
    });
    const withPassword = await render({
      database: {
        kind: "postgres",
        host: "db",
        port: 6543,
        user: "u",
        password: "p",
        database: "d",
      },
    });
    expect(withPassword.database).toMatchObject({ args: { password: "p", port: 6543 } });
  });

  it("lists no registration files when there are none", async () => {
    const config = await render({ appserviceRegistrations: {} });
    expect(config.app_service_config_files).toEqual([]);
  });

  it("keeps the template's comments and says the file is generated", async () => {
    const template = await readFile(TEMPLATE_PATH, "utf8");
    const text = renderHomeserverConfig(template, spec(), secrets);
    expect(text).toMatch(
      /^# Generated by Switchboard from synapse\/homeserver.yaml for acme.example/,
    );
    expect(text).toContain("# Presence costs CPU");
  });

  it("rejects a template without a listener", () => {
    expectAppError(
      () => renderHomeserverConfig("server_name: x\n", spec(), secrets),
      "internal",
      /listeners/,
    );
  });

  it("rejects invalid specs, naming the field", () => {
    expectAppError(
      () => {
        validateHomeserverSpec(spec({ serverName: "Acme Corp" }));
      },
      "bad_request",
      /serverName/,
    );
    expectAppError(
      () => {
        validateHomeserverSpec(spec({ port: 70000 }));
      },
      "bad_request",
      /port/,
    );
    expectAppError(
      () => {
        validateHomeserverSpec(spec({ registrationSharedSecret: "short" }));
      },
      "bad_request",
      /registrationSharedSecret/,
    );
    expectAppError(
      () => {
        validateHomeserverSpec(spec({ appserviceRegistrations: { "../escape.yaml": "" } }));
      },
      "bad_request",
      /file name/,
    );
    expectAppError(
      () => {
        validateHomeserverSpec(spec({ appserviceRegistrations: { "no-extension": "" } }));
      },
      "bad_request",
      /file name/,
    );
    expect(() => {
      validateHomeserverSpec(spec({ serverName: "localhost:8448" }));
    }).not.toThrow();
  });

  it("computes the client URL, reaching wildcard binds over loopback", () => {
    expect(clientUrlFor({ bindHost: "127.0.0.1", port: 8008 })).toBe("http://127.0.0.1:8008");
    expect(clientUrlFor({ bindHost: "0.0.0.0", port: 8008 })).toBe("http://127.0.0.1:8008");
    expect(clientUrlFor({ bindHost: "::", port: 8008 })).toBe("http://[::1]:8008");
  });

  it("ships a log config that writes to stderr", async () => {
    const logConfig = parse(await readFile(LOG_CONFIG_PATH, "utf8")) as Record<string, unknown>;
    expect(logConfig).toMatchObject({
      version: 1,
      handlers: { console: { class: "logging.StreamHandler", stream: "ext://sys.stderr" } },
      loggers: { synapse: { level: "INFO" }, "synapse.storage.SQL": { level: "WARNING" } },
    });
  });
});

describe("shared-secret registration MAC", () => {
  // Values computed with Python's hmac module, the way Synapse checks them.
  it("matches Synapse's HMAC-SHA1 over nonce, user, password and admin flag", () => {
    const user = { localpart: "alice", password: "päss" };
    expect(registrationMac("shared-secret-for-tests", "abc123", { ...user, admin: false })).toBe(
      "15c1e278029c1744f9404c14dd30f48982bead7e",
    );
    expect(registrationMac("shared-secret-for-tests", "abc123", { ...user, admin: true })).toBe(
      "a6cb1c59bf059142c98183c6e81f70dd59524514",
    );
  });
});

describe("homeserver data directory", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "switchboard-unit-hs-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("generates secrets once, owner-only, and reads them back", async () => {
    const first = await loadOrCreateSecrets(dir);
    const second = await loadOrCreateSecrets(dir);
    expect(second).toEqual(first);
    expect(first.macaroonSecretKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.formSecret).not.toBe(first.macaroonSecretKey);
    expect((await stat(join(dir, "secrets.json"))).mode & 0o777).toBe(0o600);
  });

  it("keeps exactly the given registrations", async () => {
    await writeRegistrations(dir, { "a.yaml": "id: a\n", "b.yaml": "id: b\n" });
    await writeRegistrations(dir, { "b.yaml": "id: b2\n", "c.yaml": "id: c\n" });
    const appservices = join(dir, "appservices");
    expect((await readdir(appservices)).sort()).toEqual(["b.yaml", "c.yaml"]);
    expect(await readFile(join(appservices, "b.yaml"), "utf8")).toBe("id: b2\n");
    expect((await stat(join(appservices, "c.yaml"))).mode & 0o777).toBe(0o600);
  });

  it("reads the last lines written after an offset", async () => {
    const log = join(dir, "homeserver.log");
    await writeFile(log, "old run\n");
    const offset = (await stat(log)).size;
    await writeFile(
      log,
      `old run\n${Array.from({ length: 50 }, (_, i) => `line ${i}`).join("\n")}\n`,
    );
    const tail = await readLogTail(log, offset, 40);
    expect(tail).toHaveLength(40);
    expect(tail[0]).toBe("line 10");
    expect(tail[39]).toBe("line 49");
    expect(await readLogTail(log, offset - 4, 100)).toContain("run");
    expect(await readLogTail(join(dir, "missing.log"), 0, 40)).toEqual([]);
  });
});
