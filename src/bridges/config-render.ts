import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Document, parseDocument, Scalar, visit, type Node } from "yaml";
import { badRequest } from "../shared/errors.ts";
import { escapeRegex } from "../shared/text.ts";
import type { BridgeRenderInput, RenderedBridge } from "./contracts.ts";
import { NETWORKS, type NetworkDescriptor, type ProvisioningApi } from "./networks.ts";

/**
 * Pure rendering of a tenant bridge's config.yaml and appservice
 * registration. The config starts from the network's template in bridges/
 * (comments kept) and every per-tenant value is set by key path on the
 * parsed document, as a double-quoted scalar: a hostile server name or
 * admin ID stays one string value and can never add keys. No I/O besides
 * reading the template.
 */

/** Shortest provisioning secret the bridges accept (mautrix-go refuses shorter ones). */
const MIN_PROVISIONING_SECRET_CHARS = 16;

type KeyPath = readonly string[];

/**
 * Where the keys that differ between the two config layouts live:
 * bridgev2 (mautrix-slack, mautrix-telegram) and mautrix-discord's legacy
 * layout. `null`: the layout has no such key.
 */
interface ConfigLayout {
  readonly database: KeyPath;
  readonly usernameTemplate: KeyPath;
  readonly provisioningSecret: KeyPath;
  readonly publicAddress: KeyPath;
  /** bridgev2 serves public media only when enabled; Discord whenever public_address is set. */
  readonly publicMediaEnabled: KeyPath | null;
  /** bridgev2 only: Discord relays through a webhook per room, set by the set-relay command. */
  readonly defaultRelays: KeyPath | null;
  /**
   * Keys the bridge would generate and write back to its config when left
   * out: derived from the provisioning secret instead, so the file can be
   * read-only (--no-update) and the values survive restarts and re-renders.
   */
  readonly derivedKeys: readonly KeyPath[];
}

const LAYOUTS: Readonly<Record<ProvisioningApi, ConfigLayout>> = {
  bridgev2: {
    database: ["database"],
    usernameTemplate: ["appservice", "username_template"],
    provisioningSecret: ["provisioning", "shared_secret"],
    publicAddress: ["appservice", "public_address"],
    publicMediaEnabled: ["public_media", "enabled"],
    defaultRelays: ["bridge", "relay", "default_relays"],
    derivedKeys: [["encryption", "pickle_key"]],
  },
  "discord-v1": {
    database: ["appservice", "database"],
    usernameTemplate: ["bridge", "username_template"],
    provisioningSecret: ["bridge", "provisioning", "shared_secret"],
    publicAddress: ["bridge", "public_address"],
    publicMediaEnabled: null,
    defaultRelays: null,
    derivedKeys: [["bridge", "avatar_proxy_key"]],
  },
};

/**
 * Renders the network's bridge for one tenant. Throws a bad_request
 * AppError naming the field when the input cannot make a working bridge
 * (Telegram without api_id/api_hash, a short provisioning secret, a bridge
 * admin that is not a Matrix user ID).
 */
export function renderBridge(input: BridgeRenderInput): RenderedBridge {
  const descriptor = NETWORKS[input.network];
  checkInput(input);
  const userNamespaces = bridgeUserNamespaces(input.serverName, descriptor);
  return {
    configYaml: renderConfig(input, descriptor),
    registrationYaml: renderRegistration(input, descriptor, userNamespaces),
    userNamespaces,
  };
}

function checkInput(input: BridgeRenderInput): void {
  if (input.provisioningSecret.length < MIN_PROVISIONING_SECRET_CHARS) {
    throw badRequest(
      `the provisioning secret must have at least ${MIN_PROVISIONING_SECRET_CHARS} characters`,
      { field: "provisioningSecret" },
    );
  }
  if (input.credentials !== null && input.credentials.network !== input.network) {
    throw badRequest(`the credentials are for ${input.credentials.network}, not ${input.network}`, {
      field: "credentials",
    });
  }
  // Permission keys are user IDs or the tenant's server name; "*" or a
  // bare domain among the admins would make a whole population admin.
  for (const [field, userId] of [
    ["relayUserId", input.relayUserId],
    ...input.adminUserIds.map((id) => ["adminUserIds", id] as const),
  ] as const) {
    if (!/^@[^:]+:./s.test(userId)) {
      throw badRequest(`${JSON.stringify(userId)} is not a Matrix user ID`, { field });
    }
  }
}

/**
 * The bridge's exclusive user namespaces: its ghosts, then its bot. Anchored
 * at both ends, as mautrix writes its own registrations, so that Synapse
 * (which matches from the start only) claims nothing longer.
 */
function bridgeUserNamespaces(serverName: string, descriptor: NetworkDescriptor): string[] {
  const server = escapeRegex(serverName);
  return [
    `^@${escapeRegex(descriptor.ghostPrefix)}.*:${server}$`,
    `^@${escapeRegex(descriptor.botLocalpart)}:${server}$`,
  ];
}

function renderConfig(input: BridgeRenderInput, descriptor: NetworkDescriptor): string {
  const templateFile = `${input.network}.config.yaml`;
  const doc = parseDocument(
    readFileSync(fileURLToPath(new URL(`../../bridges/${templateFile}`, import.meta.url)), "utf8"),
  );
  if (doc.errors.length > 0) throw new Error(`bridges/${templateFile}: ${doc.errors[0]?.message}`);
  const layout = LAYOUTS[descriptor.api];
  const { placement } = input;

  // Every key set here is present in the template (null when per tenant),
  // where a comment says why we set it: a missing one is a template bug.
  const set = (path: KeyPath, value: unknown): void => {
    if (!doc.hasIn(path)) {
      throw new Error(`bridges/${templateFile} has no ${path.join(".")} key to set`);
    }
    doc.setIn(path, literal(doc, value));
  };

  set(["homeserver", "address"], placement.homeserverUrl);
  set(["homeserver", "domain"], input.serverName);
  set(["appservice", "address"], placement.appserviceUrl);
  set(["appservice", "hostname"], placement.listenHost);
  set(["appservice", "port"], placement.listenPort);
  set(["appservice", "id"], input.registrationId);
  set(["appservice", "bot", "username"], descriptor.botLocalpart);
  set(["appservice", "as_token"], input.asToken);
  set(["appservice", "hs_token"], input.hsToken);
  set(layout.usernameTemplate, `${descriptor.ghostPrefix}{{.}}`);
  set([...layout.database, "type"], placement.database.type);
  set([...layout.database, "uri"], placement.database.uri);
  set(["bridge", "command_prefix"], descriptor.commandPrefix);
  set(["bridge", "permissions"], permissions(input));
  set(layout.provisioningSecret, input.provisioningSecret);
  if (layout.defaultRelays !== null) set(layout.defaultRelays, [...input.defaultRelayLoginIds]);
  const derived = (path: KeyPath): string =>
    createHmac("sha256", input.provisioningSecret)
      .update(`switchboard/bridge/${path.join(".")}`)
      .digest("base64url");
  for (const path of layout.derivedKeys) set(path, derived(path));
  if (doc.hasIn(["public_media", "signing_key"]))
    set(["public_media", "signing_key"], derived(["public_media", "signing_key"]));

  // Public media only where relayed messages carry the agent's avatar (Slack
  // icons, Discord webhooks): it opens an endpoint the remote network fetches from.
  if (input.publicMediaUrl !== undefined && descriptor.relayNames !== "name-prefix") {
    set(layout.publicAddress, input.publicMediaUrl.replace(/\/+$/, ""));
    if (layout.publicMediaEnabled !== null) set(layout.publicMediaEnabled, true);
  }

  if (input.network === "telegram") {
    const credentials = input.credentials;
    if (credentials?.network !== "telegram" || !(credentials.apiId > 0) || !credentials.apiHash) {
      throw badRequest(
        "Telegram needs the api_id and api_hash of an app from my.telegram.org: connect Telegram again with them",
        { field: "apiId" },
      );
    }
    set(["network", "api_id"], credentials.apiId);
    set(["network", "api_hash"], credentials.apiHash);
  }

  return doc.toString(YAML_OUTPUT);
}

/**
 * The tenant may be relayed (its agents and people); its admins and the
 * relay account administer the bridge (the relay account must be admin to
 * set itself as a room's relay while relaying is admin-only). Nobody else
 * gets any level, so there is no "*" entry.
 */
function permissions(input: BridgeRenderInput): Map<string, string> {
  const levels = new Map<string, string>([[input.serverName, "relay"]]);
  for (const admin of input.adminUserIds) levels.set(admin, "admin");
  levels.set(input.relayUserId, "admin");
  return levels;
}

function renderRegistration(
  input: BridgeRenderInput,
  descriptor: NetworkDescriptor,
  userNamespaces: readonly string[],
): string {
  const doc = new Document({
    id: input.registrationId,
    url: input.placement.appserviceUrl,
    as_token: input.asToken,
    hs_token: input.hsToken,
    sender_localpart: descriptor.botLocalpart,
    // Relayed agents and bridged people all speak through the bridge's users:
    // the homeserver's per-user limits would throttle whole conversations.
    rate_limited: false,
    // bridgev2 expects typing notices and receipts in transactions (MSC2409,
    // under its unstable and stable names).
    "de.sorunome.msc2409.push_ephemeral": true,
    receive_ephemeral: true,
    namespaces: {
      users: userNamespaces.map((regex) => ({ regex, exclusive: true })),
      aliases: [],
      rooms: [],
    },
  });
  quoteStrings(doc, { keys: false });
  return doc.toString(YAML_OUTPUT);
}

/**
 * No folding, and double-quoted strings written with JSON escapes: every
 * value stays on one line that YAML 1.1 (PyYAML in Synapse) and 1.2
 * (yaml.v3 in the bridges) parsers read the same way.
 */
const YAML_OUTPUT = { lineWidth: 0, doubleQuotedAsJSON: true } as const;

/** `value` as a YAML node whose strings, map keys included, are all double-quoted. */
function literal(doc: Document, value: unknown): Node {
  const node = doc.createNode(value);
  quoteStrings(node, { keys: true });
  return node;
}

function quoteStrings(node: Node | Document, options: { readonly keys: boolean }): void {
  visit(node, {
    Scalar(key, scalar) {
      if (typeof scalar.value === "string" && (options.keys || key !== "key")) {
        scalar.type = Scalar.QUOTE_DOUBLE;
      }
    },
  });
}
