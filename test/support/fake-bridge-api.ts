import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { BridgeNetwork } from "../../src/bridges/networks.ts";

/**
 * A bridge's provisioning API for tests, one network per instance, speaking
 * what the real bridges serve under /_matrix/provision: mautrix-go bridgev2
 * (`/v3/...`, for Slack and Telegram: login flows, processes of LoginStep
 * objects, whoami, logout) and mautrix-discord's own (`/v1/...`: token login,
 * ping, logout). Shapes, status codes and error bodies follow the bridges'
 * code (bridgev2/matrix/provisioning*.go, mautrix-discord provisioning.go),
 * including where it differs from provisioning.yaml: a stale step is a 500
 * M_BAD_STATE, a connector's refusal a 500 M_UNKNOWN with the cause in
 * `fi.mau.internal_error`, after which the login process is gone.
 * Requests are authenticated like the bridges do (shared secret as Bearer,
 * acting user in `?user_id=`) and recorded, minus the Authorization header,
 * so tests can look for secrets in URLs and for cancelled logins.
 */

export interface RecordedBridgeRequest {
  readonly method: string;
  /** Path and query string as sent. */
  readonly url: string;
  /** Path without the query, e.g. /_matrix/provision/v3/login/flows. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** Request headers without Authorization. */
  readonly headers: Readonly<Record<string, string>>;
  /** Parsed JSON body, the raw text if it was not JSON, or undefined. */
  readonly body: unknown;
  readonly status: number;
}

/** One remote login the bridge holds for a Matrix user. */
export interface FakeRemoteLogin {
  readonly id: string;
  readonly name: string;
  /** bridgev2 bridge state (CONNECTED, BAD_CREDENTIALS, ...): tests may change it. */
  state: string;
}

export interface LoginFlow {
  readonly name: string;
  readonly description: string;
  readonly id: string;
}

/** What the fake does; tests may change it between requests. */
export interface FakeBridgeBehaviour {
  /** Tokens the network accepts; unset: any token of the network's shape. */
  acceptTokens: ReadonlySet<string> | undefined;
  /** The network's error text for a refused token (a function gets the token, as real errors may echo it). */
  rejectWith: string | ((token: string) => string) | undefined;
  /** Every request answers this 5xx status (the bridge runs but cannot work). */
  failWith5xx: number | undefined;
  /** Step submissions answer M_BAD_STATE, as when the process is at another step. */
  stepMismatch: boolean;
  /** After the credentials the bridge asks for another step instead of completing. */
  unexpectedStep: boolean;
  /** Login flows offered (bridgev2); default the network's real list. */
  flows: readonly LoginFlow[];
}

export interface FakeBridgeApiOptions extends Partial<FakeBridgeBehaviour> {
  readonly network: BridgeNetwork;
  readonly sharedSecret: string;
  /** Matrix users the bridge's permissions let log in; unset: everyone. */
  readonly loginUsers?: readonly string[];
}

export interface FakeBridgeApiHandler {
  readonly network: BridgeNetwork;
  readonly behaviour: FakeBridgeBehaviour;
  readonly requests: RecordedBridgeRequest[];
  /** Remote logins by Matrix user ID. */
  readonly logins: ReadonlyMap<string, readonly FakeRemoteLogin[]>;
  /** Login processes started and neither completed, failed nor cancelled. */
  openLoginProcesses(): number;
  /** Serves a request under /_matrix/provision and returns true; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

export interface FakeBridgeApi extends FakeBridgeApiHandler {
  /** Base URL, e.g. http://127.0.0.1:40123. */
  readonly url: string;
  close(): Promise<void>;
}

const PREFIX = "/_matrix/provision";
const MAX_BODY_BYTES = 64 * 1024;

class BridgeError extends Error {
  readonly status: number;
  readonly body: Record<string, unknown>;
  constructor(status: number, body: Record<string, unknown>) {
    super(String(body.error));
    this.status = status;
    this.body = body;
  }
}

const matrixError = (status: number, errcode: string, error: string, internal?: string) =>
  new BridgeError(status, {
    errcode,
    error,
    ...(internal === undefined ? {} : { "fi.mau.internal_error": internal }),
  });

interface LoginProcess {
  readonly id: string;
  readonly userId: string;
  stepId: string;
  stepType: string;
  txnId: string;
}

interface NetworkFacts {
  readonly flows: readonly LoginFlow[];
  readonly relayFlow: string;
  readonly firstStep: Record<string, unknown>;
  readonly completeStepId: string;
  /** Error text when the network refuses (Go's error chain up to the network's answer). */
  readonly refusal: (reason: string) => string;
  readonly defaultReason: string;
  /** The submitted tokens, from the step's input. */
  readonly tokensOf: (input: Record<string, unknown>) => string[];
  readonly tokenShape: readonly RegExp[];
  readonly loginOf: (tokens: readonly string[]) => { id: string; name: string };
}

const text = (value: unknown): string => (typeof value === "string" ? value : "");
const hashed = (value: string) =>
  createHash("sha256").update(value).digest("hex").slice(0, 8).toUpperCase();

const NETWORK_FACTS: Record<Exclude<BridgeNetwork, "discord">, NetworkFacts> = {
  slack: {
    flows: [
      { name: "Email", description: "Sign in with your Slack email address", id: "email" },
      {
        name: "Auth token & cookie",
        description: "Log in with an auth token (and a cookie, if the token is from a browser)",
        id: "token",
      },
      { name: "Slack app", description: "Log in with a Slack app", id: "app" },
    ],
    relayFlow: "app",
    firstStep: {
      type: "user_input",
      step_id: "fi.mau.slack.login.enter_app_tokens",
      instructions: "",
      user_input: {
        fields: [
          {
            type: "token",
            id: "bot_token",
            name: "Bot token",
            description: "Slack bot token for the workspace (starts with `xoxb-`)",
            pattern: "^xoxb-.+$",
          },
          {
            type: "token",
            id: "app_token",
            name: "App token",
            description: "Slack app-level token (starts with `xapp-`)",
            pattern: "^xapp-.+$",
          },
        ],
        attachments: null,
      },
    },
    completeStepId: "fi.mau.slack.login.complete",
    refusal: (reason) => `auth.test failed: ${reason}`,
    defaultReason: "invalid_auth",
    tokensOf: (input) => [text(input.bot_token), text(input.app_token)],
    tokenShape: [/^xoxb-.+$/, /^xapp-.+$/],
    loginOf: ([botToken = ""]) => ({
      id: `T${hashed(botToken)}-U${hashed(`user:${botToken}`)}`,
      name: "Acme - switchboard",
    }),
  },
  telegram: {
    flows: [
      { name: "Phone Number", description: "Login using your Telegram phone number", id: "phone" },
      { name: "QR Code", description: "Login by scanning a QR code from your phone", id: "qr" },
      {
        name: "Bot token",
        description: "Log in as a bot using the bot token provided by BotFather",
        id: "bot",
      },
      {
        name: "Manual",
        description: "Log in using existing session credentials (advanced, do not use)",
        id: "manual",
      },
    ],
    relayFlow: "bot",
    firstStep: {
      type: "user_input",
      step_id: "fi.mau.telegram.login.bot_token",
      instructions: "Please enter the bot token you want to log in as",
      user_input: {
        fields: [
          {
            type: "token",
            id: "fi.mau.telegram.login.bot_token",
            name: "Bot token",
            description: "",
            pattern: "^\\d+:[A-Za-z0-9_-]{35}$",
          },
        ],
        attachments: null,
      },
    },
    completeStepId: "fi.mau.telegram.login.complete",
    refusal: (reason) => `failed to logout from bot API: response error 401: ${reason}`,
    defaultReason: "Unauthorized",
    tokensOf: (input) => [text(input["fi.mau.telegram.login.bot_token"])],
    tokenShape: [/^\d+:[A-Za-z0-9_-]{35}$/],
    loginOf: ([token = ""]) => ({ id: token.split(":")[0] ?? "", name: "Switchboard Bot" }),
  },
};

const DISCORD_TOKEN_SHAPE = /^[A-Za-z0-9_-]{20,100}\.[A-Za-z0-9_-]{4,20}\.[A-Za-z0-9_-]{20,100}$/;

export function createFakeBridgeApi(options: FakeBridgeApiOptions): FakeBridgeApiHandler {
  const facts = options.network === "discord" ? undefined : NETWORK_FACTS[options.network];
  const behaviour: FakeBridgeBehaviour = {
    acceptTokens: options.acceptTokens,
    rejectWith: options.rejectWith,
    failWith5xx: options.failWith5xx,
    stepMismatch: options.stepMismatch ?? false,
    unexpectedStep: options.unexpectedStep ?? false,
    flows: options.flows ?? facts?.flows ?? [],
  };
  const requests: RecordedBridgeRequest[] = [];
  const logins = new Map<string, FakeRemoteLogin[]>();
  const processes = new Map<string, LoginProcess>();

  const accepted = (tokens: readonly string[], shapes: readonly RegExp[]) =>
    behaviour.acceptTokens === undefined
      ? tokens.every((token, index) => shapes[index]?.test(token) ?? false)
      : tokens.every((token) => behaviour.acceptTokens?.has(token) === true);
  const reason = (token: string, fallback: string) =>
    typeof behaviour.rejectWith === "function"
      ? behaviour.rejectWith(token)
      : (behaviour.rejectWith ?? fallback);

  function authenticate(req: IncomingMessage, query: URLSearchParams): string {
    const auth = (req.headers.authorization ?? "").replace(/^Bearer /, "");
    if (options.network === "discord") {
      // mautrix-discord compares the header as is, after dropping "Bearer ".
      if (auth !== options.sharedSecret)
        throw new BridgeError(401, { error: "Invalid auth token", errcode: "M_UNKNOWN_TOKEN" });
    } else if (auth === "") {
      throw matrixError(401, "M_MISSING_TOKEN", "Missing auth token");
    } else if (auth !== options.sharedSecret) {
      throw matrixError(401, "M_UNKNOWN_TOKEN", "Invalid auth token");
    }
    const userId = query.get("user_id") ?? "";
    if (!/^@[^:]+:.+$/.test(userId)) throw matrixError(500, "M_UNKNOWN", "Failed to get user");
    if (options.loginUsers !== undefined && !options.loginUsers.includes(userId)) {
      throw matrixError(403, "M_FORBIDDEN", "User does not have login permissions");
    }
    return userId;
  }

  function addLogin(userId: string, login: { id: string; name: string }): void {
    // bridgev2 NewLogin with DeleteOnConflict: the same remote account replaces its old login.
    const list = (logins.get(userId) ?? []).filter((existing) => existing.id !== login.id);
    list.push({ ...login, state: "CONNECTED" });
    logins.set(userId, list);
  }

  function bridgev2(
    net: NetworkFacts,
    method: string,
    route: string,
    query: URLSearchParams,
    userId: string,
    body: unknown,
  ): Record<string, unknown> {
    const server = userId.slice(userId.indexOf(":") + 1);
    let match: RegExpExecArray | null;
    if (method === "GET" && route === "/v3/whoami") {
      return {
        network: { displayname: options.network, network_id: options.network },
        login_flows: behaviour.flows,
        homeserver: server,
        bridge_bot: `@${options.network}bot:${server}`,
        command_prefix: options.network === "slack" ? "!slack" : "!tg",
        logins: (logins.get(userId) ?? []).map((login) => ({
          state_event: login.state,
          state_ts: Math.floor(Date.now() / 1000),
          state: { state_event: login.state, timestamp: Date.now() },
          id: login.id,
          name: login.name,
          profile: {},
        })),
      };
    }
    if (method === "GET" && route === "/v3/login/flows") return { flows: behaviour.flows };
    if (method === "GET" && route === "/v3/logins")
      return { login_ids: (logins.get(userId) ?? []).map((login) => login.id) };
    if (method === "POST" && (match = /^\/v3\/login\/start\/([^/]+)$/.exec(route))) {
      const flow = decodeURIComponent(match[1] ?? "");
      if (!behaviour.flows.some((offered) => offered.id === flow) || flow !== net.relayFlow) {
        const internal =
          flow === net.relayFlow || !net.flows.some((known) => known.id === flow)
            ? `unknown login flow ${flow}`
            : `the fake bridge implements only the ${net.relayFlow} flow`;
        throw matrixError(500, "M_UNKNOWN", "Internal error creating login process", internal);
      }
      const step = { ...net.firstStep, txn_id: `bls_${randomBytes(10).toString("hex")}` };
      const process: LoginProcess = {
        id: randomBytes(10).toString("hex"),
        userId,
        stepId: text(net.firstStep.step_id),
        stepType: "user_input",
        txnId: step.txn_id,
      };
      processes.set(process.id, process);
      return { login_id: process.id, ...step };
    }
    if (
      method === "POST" &&
      (match = /^\/v3\/login\/step\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(route))
    ) {
      const process = processes.get(decodeURIComponent(match[1] ?? ""));
      if (process === undefined || process.userId !== userId)
        throw matrixError(404, "M_NOT_FOUND", "Login not found");
      const txnId = query.get("txn_id") ?? "";
      if (match[3] === "complete") {
        throw matrixError(
          410,
          "FI.MAU.BRIDGE.LOGIN_ALREADY_FINISHED",
          "Login process was already finished",
        );
      }
      if (
        behaviour.stepMismatch ||
        decodeURIComponent(match[2] ?? "") !== process.stepId ||
        (txnId !== "" && txnId !== process.txnId)
      ) {
        throw matrixError(500, "M_BAD_STATE", "Step ID does not match");
      }
      if (match[3] !== process.stepType)
        throw matrixError(500, "M_BAD_STATE", "Step type does not match");
      if (typeof body !== "object" || body === null)
        throw matrixError(400, "M_NOT_JSON", "Failed to decode request body");
      const tokens = net.tokensOf(body as Record<string, unknown>);
      if (!accepted(tokens, net.tokenShape)) {
        processes.delete(process.id);
        const internal = net.refusal(reason(tokens[0] ?? "", net.defaultReason));
        throw matrixError(500, "M_UNKNOWN", "Internal error in login step", internal);
      }
      const txn = `bls_${randomBytes(10).toString("hex")}`;
      if (behaviour.unexpectedStep) {
        Object.assign(process, {
          stepId: "fi.mau.fake.2fa",
          stepType: "display_and_wait",
          txnId: txn,
        });
        return {
          login_id: process.id,
          type: "display_and_wait",
          step_id: "fi.mau.fake.2fa",
          txn_id: txn,
          instructions: "Confirm the login on another device",
          display_and_wait: { type: "code", data: "1234" },
        };
      }
      processes.delete(process.id);
      const login = net.loginOf(tokens);
      addLogin(userId, login);
      return {
        login_id: process.id,
        type: "complete",
        step_id: net.completeStepId,
        txn_id: txn,
        instructions: `Successfully logged in as ${login.name}`,
        complete: { user_login_id: login.id },
      };
    }
    if (method === "POST" && (match = /^\/v3\/login\/cancel\/([^/]+)$/.exec(route))) {
      const id = decodeURIComponent(match[1] ?? "");
      if (!processes.has(id)) throw matrixError(404, "M_NOT_FOUND", "Login not found");
      processes.delete(id);
      return {};
    }
    if (method === "POST" && (match = /^\/v3\/logout\/([^/]+)$/.exec(route))) {
      const id = decodeURIComponent(match[1] ?? "");
      const list = logins.get(userId) ?? [];
      if (id === "all") logins.delete(userId);
      else if (!list.some((login) => login.id === id))
        throw matrixError(404, "M_NOT_FOUND", "Login not found");
      else
        logins.set(
          userId,
          list.filter((login) => login.id !== id),
        );
      return {};
    }
    throw matrixError(404, "M_UNRECOGNIZED", "Unrecognized endpoint");
  }

  function discord(
    method: string,
    route: string,
    userId: string,
    body: unknown,
  ): Record<string, unknown> {
    const current = logins.get(userId)?.[0];
    if (method === "GET" && route === "/v1/ping") {
      return {
        // respPing's Discord field has no json tag: Go encodes it under "Discord".
        Discord: {
          id: current?.id,
          logged_in: current !== undefined,
          connected: current !== undefined,
          conn: {},
        },
        mxid: userId,
        management_room: "",
      };
    }
    if (method === "POST" && route === "/v1/logout") {
      const status = current === undefined ? "User wasn't logged in." : "Logged out successfully.";
      logins.delete(userId);
      return { success: true, status };
    }
    if (method === "POST" && route === "/v1/login/token") {
      if (current !== undefined) {
        throw new BridgeError(409, {
          success: false,
          error: "You're already logged into Discord",
          errcode: "FI.MAU.DISCORD.ALREADY_LOGGED_IN",
        });
      }
      const token =
        typeof body === "object" && body !== null ? (body as { token?: unknown }).token : undefined;
      if (typeof token !== "string")
        throw new BridgeError(400, {
          success: false,
          error: "Failed to parse request body",
          errcode: "M_BAD_JSON",
        });
      // Without "Bot " Discord takes the token for a user's and refuses it.
      const bare = token.startsWith("Bot ") ? token.slice(4) : undefined;
      const id = Buffer.from(bare?.split(".")[0] ?? "", "base64url").toString("utf8");
      if (bare === undefined || !accepted([bare], [DISCORD_TOKEN_SHAPE]) || !/^\d+$/.test(id)) {
        throw new BridgeError(401, {
          success: false,
          error: reason(token, "Failed to connect to Discord"),
          errcode: "FI.MAU.DISCORD.POST_LOGIN_CONNECTION_FAILED",
        });
      }
      logins.set(userId, [{ id, name: "Switchboard", state: "CONNECTED" }]);
      return { success: true, id, username: "Switchboard", discriminator: "0" };
    }
    // gorilla/mux's own 404 is plain text; a JSON body carries the same meaning here.
    throw new BridgeError(404, { error: "404 page not found" });
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    const raw = await readBody(req);
    let body: unknown = undefined;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    let status = 200;
    let answer: Record<string, unknown>;
    try {
      if (behaviour.failWith5xx !== undefined) {
        throw matrixError(behaviour.failWith5xx, "M_UNKNOWN", "Failed to get user");
      }
      const userId = authenticate(req, url.searchParams);
      const route = url.pathname.slice(PREFIX.length);
      answer =
        facts === undefined
          ? discord(req.method ?? "GET", route, userId, body)
          : bridgev2(facts, req.method ?? "GET", route, url.searchParams, userId, body);
    } catch (error) {
      if (!(error instanceof BridgeError)) throw error;
      status = error.status;
      answer = error.body;
    }
    const headers = Object.fromEntries(
      Object.entries(req.headers)
        .filter(([name]) => name !== "authorization")
        .map(([name, value]) => [name, Array.isArray(value) ? value.join(", ") : (value ?? "")]),
    );
    requests.push({
      method: req.method ?? "GET",
      url: req.url ?? "/",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
      status,
    });
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(answer));
  }

  return {
    network: options.network,
    behaviour,
    requests,
    logins,
    openLoginProcesses: () => processes.size,
    handle(req, res) {
      if (!(req.url ?? "").startsWith(`${PREFIX}/`)) return false;
      serve(req, res).catch((error: unknown) => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ errcode: "M_UNKNOWN", error: String(error) }));
      });
      return true;
    },
  };
}

/** Starts the fake on its own port on 127.0.0.1. */
export async function startFakeBridgeApi(options: FakeBridgeApiOptions): Promise<FakeBridgeApi> {
  const handler = createFakeBridgeApi(options);
  const server = createServer((req, res) => {
    if (!handler.handle(req, res)) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ errcode: "M_UNRECOGNIZED", error: "Unrecognized endpoint" }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(handler, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error === undefined ? resolve() : reject(error)));
      }),
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error("request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
