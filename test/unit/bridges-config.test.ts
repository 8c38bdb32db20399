import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { renderBridge } from "../../src/bridges/config-render.ts";
import type { BridgeRenderInput } from "../../src/bridges/contracts.ts";
import {
  BRIDGE_NETWORKS,
  NETWORKS,
  type BridgeCredentials,
  type BridgeNetwork,
} from "../../src/bridges/networks.ts";
import { AppError } from "../../src/shared/errors.ts";
import { documentedKeys, keyPaths, REQUIRED } from "../fixtures/bridges/required-keys.ts";
import type { MatrixUserId } from "../../src/shared/ids.ts";

const AS_TOKEN = "as-token-5b1e8c0d2f7a4e93";
const HS_TOKEN = "hs-token-9a3c7e1b6d2f8a40";
const PROVISIONING_SECRET = "provisioning-secret-3e8f1a2b7c";
const DATABASE_PASSWORD = "db-password-71c2e9";
const DATABASE_URI = `postgres://bridge_acme:${DATABASE_PASSWORD}@postgres:5432/bridge_acme?sslmode=disable`;
const API_HASH = "0123456789abcdef0123456789abcdef";
const RELAY = "@switchboard-relay:acme.test" as MatrixUserId;
const ADMINS = ["@alice:acme.test", "@bob:acme.test"] as MatrixUserId[];

/** Each network's relay-login credentials: they must never reach a config or registration. */
const CREDENTIALS: Record<BridgeNetwork, BridgeCredentials> = {
  slack: {
    network: "slack",
    botToken: "xoxb-1111-2222-bottokenslack",
    appToken: "xapp-1-A1-apptokenslack",
  },
  discord: {
    network: "discord",
    botToken: "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.discordbottokendiscordbottoken",
  },
  telegram: {
    network: "telegram",
    botToken: "123456789:AAEhBOweik6ad6PsVMRxjeQKh-telegram",
    apiId: 94575,
    apiHash: API_HASH,
  },
};

function bridgeTokens(credentials: BridgeCredentials): string[] {
  return credentials.network === "slack"
    ? [credentials.botToken, credentials.appToken]
    : [credentials.botToken];
}

function input(
  network: BridgeNetwork,
  overrides: Partial<BridgeRenderInput> = {},
): BridgeRenderInput {
  const port = NETWORKS[network].defaultPort;
  return {
    network,
    serverName: "acme.test",
    placement: {
      listenHost: "0.0.0.0",
      listenPort: port,
      appserviceUrl: `http://acme-${network}:${port}`,
      homeserverUrl: "http://acme-synapse:8008",
      provisioningUrl: `http://acme-${network}:${port}`,
      database: { type: "postgres", uri: DATABASE_URI },
    },
    registrationId: `switchboard-${network}`,
    asToken: AS_TOKEN,
    hsToken: HS_TOKEN,
    provisioningSecret: PROVISIONING_SECRET,
    relayUserId: RELAY,
    adminUserIds: ADMINS,
    defaultRelayLoginIds: ["T0ACME-U0RELAY"],
    credentials: CREDENTIALS[network],
    ...overrides,
  };
}

type Tree = Record<string, unknown>;

function render(network: BridgeNetwork, overrides: Partial<BridgeRenderInput> = {}) {
  const rendered = renderBridge(input(network, overrides));
  return {
    ...rendered,
    config: parse(rendered.configYaml) as Tree,
    registration: parse(rendered.registrationYaml) as Tree,
  };
}

function at(tree: unknown, path: string): unknown {
  let node = tree;
  for (const key of path.split(".")) {
    if (typeof node !== "object" || node === null || !Object.hasOwn(node, key)) return undefined;
    node = (node as Tree)[key];
  }
  return node;
}

/** Where `needle` occurs in a parsed document: dotted paths of values and keys that contain it. */
function placesOf(tree: unknown, needle: string, prefix = ""): string[] {
  if (typeof tree === "string") return tree.includes(needle) ? [prefix] : [];
  if (typeof tree !== "object" || tree === null) return [];
  return Object.entries(tree).flatMap(([key, value]) => {
    const path = prefix === "" ? key : `${prefix}.${key}`;
    return [...(key.includes(needle) ? [`${path} (key)`] : []), ...placesOf(value, needle, path)];
  });
}

/**
 * Whether Synapse would treat `userId` as the bridge's: it uses Python's
 * re.match, anchored at the start only (a sticky RegExp does the same).
 * The namespaces must also give the whole-match answer the spec intends.
 */
function claims(namespaces: readonly string[], userId: string): boolean {
  const synapse = namespaces.some((regex) => new RegExp(regex, "y").test(userId));
  const whole = namespaces.some((regex) => new RegExp(`^(?:${regex})$`).test(userId));
  expect(synapse).toBe(whole);
  return synapse;
}

/** Where each secret may appear in a rendered config, per layout. */
const SECRET_PLACES: Record<BridgeNetwork, Record<string, readonly string[]>> = {
  slack: {
    [AS_TOKEN]: ["appservice.as_token"],
    [HS_TOKEN]: ["appservice.hs_token"],
    [PROVISIONING_SECRET]: ["provisioning.shared_secret"],
    [DATABASE_PASSWORD]: ["database.uri"],
    [API_HASH]: [],
  },
  telegram: {
    [AS_TOKEN]: ["appservice.as_token"],
    [HS_TOKEN]: ["appservice.hs_token"],
    [PROVISIONING_SECRET]: ["provisioning.shared_secret"],
    [DATABASE_PASSWORD]: ["database.uri"],
    [API_HASH]: ["network.api_hash"],
  },
  discord: {
    [AS_TOKEN]: ["appservice.as_token"],
    [HS_TOKEN]: ["appservice.hs_token"],
    [PROVISIONING_SECRET]: ["bridge.provisioning.shared_secret"],
    [DATABASE_PASSWORD]: ["appservice.database.uri"],
    [API_HASH]: [],
  },
};

const DATABASE_PATH: Record<BridgeNetwork, string> = {
  slack: "database",
  telegram: "database",
  discord: "appservice.database",
};

describe.each(BRIDGE_NETWORKS)("renderBridge(%s)", (network) => {
  const descriptor = NETWORKS[network];

  it("sets every key the bridge requires for our use", () => {
    const { config } = render(network);
    for (const path of REQUIRED[network]) {
      expect(at(config, path), path).not.toBeUndefined();
      expect(at(config, path), path).not.toBeNull();
    }
  });

  it("sets only keys of the bridge's documented example config (the bridge drops others)", () => {
    const documented = documentedKeys(network);
    const withPublicMedia = render(network, { publicMediaUrl: "https://media.acme.example" });
    for (const path of keyPaths(withPublicMedia.config)) expect(documented, path).toContain(path);
  });

  it("puts the tenant's values where they belong", () => {
    const { config } = render(network);
    expect(at(config, "homeserver.address")).toBe("http://acme-synapse:8008");
    expect(at(config, "homeserver.domain")).toBe("acme.test");
    expect(at(config, "appservice.address")).toBe(
      `http://acme-${network}:${descriptor.defaultPort}`,
    );
    expect(at(config, "appservice.hostname")).toBe("0.0.0.0");
    expect(at(config, "appservice.port")).toBe(descriptor.defaultPort);
    expect(at(config, "appservice.id")).toBe(`switchboard-${network}`);
    expect(at(config, "appservice.bot.username")).toBe(descriptor.botLocalpart);
    expect(at(config, `${DATABASE_PATH[network]}.type`)).toBe("postgres");
    expect(at(config, `${DATABASE_PATH[network]}.uri`)).toBe(DATABASE_URI);
    expect(at(config, "bridge.command_prefix")).toBe(descriptor.commandPrefix);
    const usernameTemplate =
      network === "discord" ? "bridge.username_template" : "appservice.username_template";
    expect(at(config, usernameTemplate)).toBe(`${descriptor.ghostPrefix}{{.}}`);
  });

  it("lets the tenant be relayed and makes its admins and the relay account bridge admins, nobody else", () => {
    const { config } = render(network);
    expect(at(config, "bridge.permissions")).toEqual({
      "acme.test": "relay",
      "@alice:acme.test": "admin",
      "@bob:acme.test": "admin",
      "@switchboard-relay:acme.test": "admin",
    });
  });

  it("turns end-to-bridge encryption off and logs JSON to stdout", () => {
    const { config } = render(network);
    const encryption = network === "discord" ? "bridge.encryption" : "encryption";
    expect(at(config, encryption)).toMatchObject({ allow: false, default: false, require: false });
    expect(at(config, "logging.writers")).toEqual([{ type: "stdout", format: "json" }]);
  });

  it("keeps each secret in its one place and no bot token anywhere", () => {
    const { config, configYaml, registration, registrationYaml } = render(network);
    for (const [secret, places] of Object.entries(SECRET_PLACES[network])) {
      expect(placesOf(config, secret), secret).toEqual(places);
    }
    // The registration holds the appservice tokens and nothing else secret.
    expect(placesOf(registration, AS_TOKEN)).toEqual(["as_token"]);
    expect(placesOf(registration, HS_TOKEN)).toEqual(["hs_token"]);
    for (const secret of [PROVISIONING_SECRET, DATABASE_PASSWORD, API_HASH]) {
      expect(registrationYaml).not.toContain(secret);
    }
    for (const credentials of Object.values(CREDENTIALS)) {
      for (const token of bridgeTokens(credentials)) {
        expect(configYaml).not.toContain(token);
        expect(registrationYaml).not.toContain(token);
      }
    }
  });

  it("derives the keys a bridge would otherwise generate and write back, stable per bridge", () => {
    const paths = {
      slack: ["public_media.signing_key", "encryption.pickle_key"],
      telegram: ["encryption.pickle_key"],
      discord: ["bridge.avatar_proxy_key"],
    }[network];
    const { config } = render(network);
    const again = render(network).config;
    const other = render(network, { provisioningSecret: `${PROVISIONING_SECRET}-other` }).config;
    for (const path of paths) {
      const value = at(config, path);
      expect(value, path).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(at(again, path), path).toBe(value);
      expect(at(other, path), path).not.toBe(value);
      expect(value, path).not.toContain(PROVISIONING_SECRET);
    }
  });

  it("writes a registration for this bridge's appservice", () => {
    const { registration } = render(network);
    expect(registration).toMatchObject({
      id: `switchboard-${network}`,
      url: `http://acme-${network}:${descriptor.defaultPort}`,
      as_token: AS_TOKEN,
      hs_token: HS_TOKEN,
      sender_localpart: descriptor.botLocalpart,
      rate_limited: false,
      "de.sorunome.msc2409.push_ephemeral": true,
      receive_ephemeral: true,
      namespaces: { aliases: [], rooms: [] },
    });
  });

  it("claims the bridge's ghosts and bot, exclusively, and nobody else", () => {
    const { registration, userNamespaces } = render(network);
    const users = (registration.namespaces as { users: { regex: string; exclusive: boolean }[] })
      .users;
    expect(users.map((namespace) => namespace.regex)).toEqual(userNamespaces);
    expect(users.every((namespace) => namespace.exclusive)).toBe(true);

    const { ghostPrefix, botLocalpart } = descriptor;
    expect(claims(userNamespaces, `@${ghostPrefix}U04ABC123:acme.test`)).toBe(true);
    expect(claims(userNamespaces, `@${ghostPrefix}123456789012345678:acme.test`)).toBe(true);
    expect(claims(userNamespaces, `@${botLocalpart}:acme.test`)).toBe(true);
    for (const other of [
      `@${botLocalpart}2:acme.test`,
      `@x${ghostPrefix}a:acme.test`,
      `@${ghostPrefix}a:acme.test.evil.example`,
      `@${ghostPrefix}a:acmeXtest`,
      `@${ghostPrefix}a:other.test`,
      `@${botLocalpart}:other.test`,
      "@ai_ada:acme.test",
      "@alice:acme.test",
      RELAY,
      ...BRIDGE_NETWORKS.filter((n) => n !== network).flatMap((n) => [
        `@${NETWORKS[n].ghostPrefix}a:acme.test`,
        `@${NETWORKS[n].botLocalpart}:acme.test`,
      ]),
    ]) {
      expect(claims(userNamespaces, other), other).toBe(false);
    }
  });

  it("keeps hostile server names and admin IDs as values, the same under YAML 1.1 and 1.2", () => {
    const serverName = 'acme.test"\nevil: true\n"*": admin\n# ';
    const admins = [
      '@eve:acme.test": admin\n  "*": admin',
      "@mallory:acme.test\n- [a, b]",
      "@trudy:acme.test {x: y} &anchor *alias !!python/object/apply:os.system ['id']",
      "@merge:acme.test\n<<: {admin: true}",
    ] as MatrixUserId[];
    const benign = render(network);
    const hostile = render(network, { serverName, adminUserIds: admins });

    for (const text of [hostile.configYaml, hostile.registrationYaml]) {
      // PyYAML (Synapse) and older parsers read YAML 1.1, with merge keys; yaml.v3 (the bridges) 1.2.
      expect(parse(text, { version: "1.1", merge: true })).toEqual(parse(text));
    }
    expect(Object.keys(hostile.config)).toEqual(Object.keys(benign.config));
    expect(keyPaths(hostile.config)).toEqual(keyPaths(benign.config));
    expect(at(hostile.config, "homeserver.domain")).toBe(serverName);
    expect(at(hostile.config, "bridge.permissions")).toEqual({
      [serverName]: "relay",
      ...Object.fromEntries(admins.map((admin) => [admin, "admin"])),
      [RELAY]: "admin",
    });
    expect(Object.keys(hostile.registration)).toEqual(Object.keys(benign.registration));
    const users = (hostile.registration.namespaces as { users: { regex: string }[] }).users;
    expect(users.map((namespace) => namespace.regex)).toEqual(hostile.userNamespaces);
  });

  it("keeps values that YAML 1.1 would read as booleans, nulls or numbers as strings", () => {
    const rendered = render(network, {
      serverName: "yes",
      registrationId: "off",
      asToken: "~",
      hsToken: "0x1F",
      provisioningSecret: "1_000_000_000_000_000",
    });
    for (const text of [rendered.configYaml, rendered.registrationYaml]) {
      expect(parse(text, { version: "1.1" })).toEqual(parse(text));
    }
    expect(at(rendered.config, "homeserver.domain")).toBe("yes");
    expect(rendered.registration).toMatchObject({ id: "off", as_token: "~", hs_token: "0x1F" });
  });

  it("refuses bridge admins that are not Matrix user IDs (a wildcard would make everyone admin)", () => {
    for (const admin of ["*", "acme.test", "alice"]) {
      expect(() => renderBridge(input(network, { adminUserIds: [admin as MatrixUserId] }))).toThrow(
        /is not a Matrix user ID/,
      );
    }
  });

  it("refuses a provisioning secret shorter than the bridges accept", () => {
    expect(() => renderBridge(input(network, { provisioningSecret: "short" }))).toThrow(
      /at least 16 characters/,
    );
  });

  it("refuses another network's credentials", () => {
    const other = BRIDGE_NETWORKS.find((n) => n !== network)!;
    expect(() => renderBridge(input(network, { credentials: CREDENTIALS[other] }))).toThrow(
      `the credentials are for ${other}, not ${network}`,
    );
  });
});

describe("relay settings per network", () => {
  it("slack: the agent's name is the message's username, not part of its text", () => {
    const { config } = render("slack");
    expect(at(config, "bridge.relay")).toMatchObject({
      enabled: true,
      admin_only: true,
      default_relays: ["T0ACME-U0RELAY"],
      displayname_format: "{{ .DisambiguatedName }}",
    });
    const formats = at(config, "bridge.relay.message_formats") as Record<string, string>;
    for (const msgtype of ["m.text", "m.notice", "m.emote"]) {
      expect(formats[msgtype]).toBe("{{ .Message }}");
    }
    // Uploads have no per-message name on Slack: their captions keep it.
    expect(formats["m.file"]).toContain("{{ .Sender.DisambiguatedName }}");
    expect(at(config, "bridge.bridge_status_notices")).toBe("errors");
    expect(at(config, "bridge.bridge_notices")).toBe(false);
  });

  it("telegram: the agent's name starts the text", () => {
    const { config } = render("telegram");
    expect(at(config, "bridge.relay")).toMatchObject({
      enabled: true,
      admin_only: true,
      default_relays: ["T0ACME-U0RELAY"],
    });
    const formats = at(config, "bridge.relay.message_formats") as Record<string, string>;
    expect(formats["m.text"]).toBe("<b>{{ .Sender.DisambiguatedName }}</b>: {{ .Message }}");
    expect(at(config, "bridge.relay.displayname_format")).toBeUndefined();
  });

  it("discord: relays are per-room webhooks, with no bridgev2 relay section", () => {
    const { config } = render("discord");
    expect(at(config, "bridge.relay")).toBeUndefined();
    expect(at(config, "bridge.prefix_webhook_messages")).toBe(false);
    expect(at(config, "bridge.provisioning.prefix")).toBe("/_matrix/provision");
  });

  it("takes no default relays until the relay login exists", () => {
    expect(
      at(render("slack", { defaultRelayLoginIds: [] }).config, "bridge.relay.default_relays"),
    ).toEqual([]);
  });
});

describe("public media", () => {
  const url = "https://media.acme.example/";

  it("slack: serves avatars for per-message icons when a public URL is given", () => {
    expect(at(render("slack").config, "public_media.enabled")).toBe(false);
    expect(at(render("slack").config, "appservice.public_address")).toBeNull();
    const { config } = render("slack", { publicMediaUrl: url });
    expect(at(config, "public_media.enabled")).toBe(true);
    expect(at(config, "appservice.public_address")).toBe("https://media.acme.example");
  });

  it("discord: webhook avatars come from bridge.public_address when a public URL is given", () => {
    expect(at(render("discord").config, "bridge.public_address")).toBeNull();
    const { config } = render("discord", { publicMediaUrl: url });
    expect(at(config, "bridge.public_address")).toBe("https://media.acme.example");
  });

  it("telegram: stays off, the bot posts without avatars", () => {
    const { config } = render("telegram", { publicMediaUrl: url });
    expect(at(config, "public_media")).toBeUndefined();
    expect(at(config, "appservice.public_address")).toBeUndefined();
  });
});

describe("telegram's api_id and api_hash", () => {
  it("go under network, from the credentials", () => {
    const { config } = render("telegram");
    expect(at(config, "network.api_id")).toBe(94575);
    expect(at(config, "network.api_hash")).toBe(API_HASH);
  });

  it("are required: without them the bridge is refused with a clear message", () => {
    let error: unknown;
    try {
      renderBridge(input("telegram", { credentials: null }));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe("bad_request");
    expect((error as AppError).message).toBe(
      "Telegram needs the api_id and api_hash of an app from my.telegram.org: connect Telegram again with them",
    );
  });

  it("are refused when empty", () => {
    const credentials = { ...CREDENTIALS.telegram, apiId: 0 } as BridgeCredentials;
    expect(() => renderBridge(input("telegram", { credentials }))).toThrow(/api_id and api_hash/);
  });

  it("are not needed by the other bridges", () => {
    expect(() => renderBridge(input("slack", { credentials: null }))).not.toThrow();
    expect(() => renderBridge(input("discord", { credentials: null }))).not.toThrow();
  });
});
