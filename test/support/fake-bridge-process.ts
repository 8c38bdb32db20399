import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import { isBridgeNetwork } from "../../src/bridges/networks.ts";
import { createFakeBridgeApi, type FakeRemoteLogin } from "./fake-bridge-api.ts";

/**
 * A stand-in for a mautrix bridge binary, for the local driver in tests:
 *
 *   node test/support/fake-bridge-process.ts --network slack \
 *     [--accept-token T ...] -c config.yaml -r registration.yaml [--no-update]
 *
 * It reads the rendered config (bridgev2 or mautrix-discord layout), listens
 * where appservice.hostname/port say, answers the homeserver's appservice
 * API with the registration's hs_token checked (transactions, ping, user
 * and room queries: nothing exists), and serves the fake provisioning API
 * (fake-bridge-api.ts) with the config's shared secret. `--accept-token`
 * (repeatable) limits the remote tokens that log in; without it any token
 * of the right shape does. Remote logins outlive restarts like the real
 * bridges' (kept, as JSON, in the file the config's SQLite URI names).
 * SIGTERM stops it cleanly, as the real bridges do.
 */

interface RenderedConfig {
  database?: { uri?: string };
  appservice?: { hostname?: string; port?: number; hs_token?: string; database?: { uri?: string } };
  provisioning?: { shared_secret?: string };
  bridge?: { provisioning?: { shared_secret?: string } };
}

const { values } = parseArgs({
  options: {
    network: { type: "string" },
    "accept-token": { type: "string", multiple: true },
    config: { type: "string", short: "c" },
    registration: { type: "string", short: "r" },
    "no-update": { type: "boolean" },
  },
});

const network = values.network ?? "";
if (!isBridgeNetwork(network)) throw new Error(`--network must name a bridge network`);
if (values.config === undefined || values.registration === undefined)
  throw new Error("-c config.yaml and -r registration.yaml are required");
const config = parse(readFileSync(values.config, "utf8")) as RenderedConfig;
// The real bridges refuse to start without their registration.
readFileSync(values.registration, "utf8");

const host = config.appservice?.hostname;
const port = config.appservice?.port;
const hsToken = config.appservice?.hs_token;
// mautrix-discord keeps provisioning under bridge:, bridgev2 at the top level.
const sharedSecret =
  network === "discord"
    ? config.bridge?.provisioning?.shared_secret
    : config.provisioning?.shared_secret;
if (host === undefined || port === undefined || hsToken === undefined || sharedSecret === undefined)
  throw new Error(
    "config lacks appservice.hostname/port/hs_token or the provisioning shared_secret",
  );

// mautrix-discord keeps its database under appservice:, bridgev2 at the top level.
const databaseUri = (network === "discord" ? config.appservice?.database : config.database)?.uri;
const databasePath = /^file:([^?]+)/.exec(databaseUri ?? "")?.[1];
if (databasePath === undefined) throw new Error("the stand-in bridge needs an SQLite database URI");

const accepted = values["accept-token"];
const provisioning = createFakeBridgeApi({
  network,
  sharedSecret,
  ...(accepted === undefined ? {} : { acceptTokens: new Set(accepted) }),
});

// The handler's map is the one it serves from: restored before the first request.
const logins = provisioning.logins as Map<string, readonly FakeRemoteLogin[]>;
if (existsSync(databasePath)) {
  const saved = JSON.parse(readFileSync(databasePath, "utf8")) as Record<string, FakeRemoteLogin[]>;
  for (const [userId, list] of Object.entries(saved)) logins.set(userId, list);
}
const saveLogins = (): void => {
  writeFileSync(databasePath, JSON.stringify(Object.fromEntries(logins)), { mode: 0o600 });
};

function answer(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** The Matrix appservice API (spec v1.x) as a bridge with no users or aliases of its own answers it. */
function appservice(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://bridge");
  const token =
    (req.headers.authorization ?? "").replace(/^Bearer /, "") ||
    (url.searchParams.get("access_token") ?? "");
  if (token === "") {
    answer(res, 401, { errcode: "M_UNAUTHORIZED", error: "Missing access token" });
    return;
  }
  if (token !== hsToken) {
    answer(res, 403, { errcode: "M_FORBIDDEN", error: "Incorrect access token" });
    return;
  }
  const path = url.pathname;
  const method = req.method ?? "GET";
  if (method === "PUT" && /^\/_matrix\/app\/v1\/transactions\/[^/]+$/.test(path)) {
    answer(res, 200, {});
  } else if (method === "POST" && path === "/_matrix/app/v1/ping") {
    answer(res, 200, {});
  } else if (method === "GET" && /^\/_matrix\/app\/v1\/(users|rooms)\/[^/]+$/.test(path)) {
    answer(res, 404, { errcode: "M_NOT_FOUND", error: "Not found" });
  } else {
    answer(res, 404, { errcode: "M_UNRECOGNIZED", error: "Unrecognized request" });
  }
}

const server = createServer((req, res) => {
  // The provisioning API reads its own body; elsewhere it is drained first (transactions carry events).
  if (provisioning.handle(req, res)) {
    res.once("finish", saveLogins);
    return;
  }
  req.resume();
  req.once("end", () => {
    appservice(req, res);
  });
});
server.listen(port, host, () => {
  process.stdout.write(`fake ${network} bridge listening on ${host}:${String(port)}\n`);
});
process.once("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
