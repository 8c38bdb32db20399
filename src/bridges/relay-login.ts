import { AppError } from "../shared/errors.ts";
import type { RelayLogin, RelayLoginClient } from "./contracts.ts";
import {
  NETWORKS,
  type BridgeCredentials,
  type BridgeNetwork,
  type DiscordCredentials,
} from "./networks.ts";
import {
  AUTH_ERRCODES,
  arrayOf,
  expectOk,
  failure,
  objectOf,
  request,
  stringOf,
  unexpectedAnswer,
  type Answer,
  type ProvisioningTarget,
  type Session,
} from "./provisioning-http.ts";

/**
 * The relay login through a bridge's provisioning API (requests in
 * provisioning-http.ts). bridgev2 bridges (Slack, Telegram) take a
 * login flow of steps (`/v3/login/...`); mautrix-discord takes one token
 * request (`/v1/login/token`). Answers are mapped to AppErrors by what they
 * mean, read from the bridges' code: a connector's SubmitUserInput failure
 * comes back as 500 M_UNKNOWN with the cause in `fi.mau.internal_error`
 * (Slack's "auth.test failed: invalid_auth"), a stale step as M_BAD_STATE
 * (also a 500), Discord's refused token as 401 with its own errcode.
 * A login that fails after it started is cancelled on the bridge.
 */

/** Cancelling a failed login is best effort and must not hold the caller up for long. */
const CANCEL_TIMEOUT_MS = 5_000;
/** bridgev2 login states in which the login cannot relay anything. */
const UNUSABLE_LOGIN_STATES = new Set(["BAD_CREDENTIALS", "LOGGED_OUT"]);
/** Internal errors that say the bridge could not reach the network, not that the token is wrong. */
const TRANSPORT_FAILURE =
  /dial tcp|i\/o timeout|connection refused|connection reset|no such host|TLS handshake|context deadline exceeded|failed to send request/i;

/** What to check when a network refuses the relay's credentials. */
const REFUSAL_HINTS: Readonly<Record<BridgeNetwork, { what: string; check: string }>> = {
  slack: {
    what: "the bot/app token",
    check:
      "Check that the bot token (xoxb-) and the app-level token (xapp-, with connections:write) belong to the same Slack app, installed in the workspace with Socket Mode on.",
  },
  discord: {
    what: "the bot token",
    check:
      "Check the token from the Discord developer portal and that the bot has the Message Content and Server Members intents.",
  },
  telegram: {
    what: "the bot token",
    check: "Check the token BotFather gave (it may have been revoked).",
  },
};

export interface RelayLoginClientOptions extends ProvisioningTarget {
  readonly network: BridgeNetwork;
}

export function createRelayLoginClient(options: RelayLoginClientOptions): RelayLoginClient {
  const session: Session = {
    target: options,
    network: options.network,
    bridge: `the ${NETWORKS[options.network].displayName} bridge`,
    secrets: [options.sharedSecret],
  };
  const bridgev2 = NETWORKS[options.network].api === "bridgev2";
  return {
    ready: async () => {
      expectOk(
        session,
        await request(session, "GET", bridgev2 ? "/v3/whoami" : "/v1/ping"),
        "answering",
      );
    },
    login: async (credentials) => {
      if (credentials.network !== options.network) {
        throw new AppError(
          "internal",
          `${credentials.network} credentials were given to ${session.bridge}`,
        );
      }
      const scoped: Session = {
        ...session,
        secrets: [...session.secrets, ...secretsOf(credentials)],
      };
      return !bridgev2 && credentials.network === "discord"
        ? loginDiscord(scoped, credentials, false)
        : loginBridgev2(scoped, credentials);
    },
    status: () => (bridgev2 ? statusBridgev2(session) : statusDiscord(session)),
    logout: async () => {
      const path = bridgev2 ? "/v3/logout/all" : "/v1/logout";
      expectOk(session, await request(session, "POST", path), "logging out");
    },
  };
}

// ---- bridgev2 (mautrix-slack, mautrix-telegram) ----

interface Field {
  readonly type: string;
  readonly id: string;
  readonly name: string;
  readonly pattern: string | undefined;
}

interface Step {
  readonly type: string;
  readonly stepId: string;
  readonly txnId: string | undefined;
  readonly fields: readonly Field[];
  readonly userLoginId: string | undefined;
}

async function loginBridgev2(
  session: Session,
  credentials: BridgeCredentials,
): Promise<RelayLogin> {
  const flowId = NETWORKS[session.network].loginFlowId;
  const flows = expectOk(
    session,
    await request(session, "GET", "/v3/login/flows"),
    "listing login flows",
  );
  const offered = arrayOf(flows.body.flows).map((flow) => stringOf(objectOf(flow).id) ?? "?");
  const notOffered = badRequest(
    `${session.bridge} does not offer the "${flowId}" login (it offers: ${offered.join(", ") || "none"}); check the bridge's version and config`,
  );
  if (!offered.includes(flowId)) throw notOffered;
  const started = await request(session, "POST", `/v3/login/start/${encodeURIComponent(flowId)}`);
  if (started.status === 404 && started.errcode === "M_NOT_FOUND") throw notOffered;
  expectOk(session, started, "starting the login");
  const loginId = stringOf(started.body.login_id);
  if (loginId === undefined) throw unexpectedAnswer(session, started, "starting the login");
  try {
    return await submitCredentials(session, loginId, parseStep(started.body), credentials);
  } catch (error) {
    // The bridge keeps a login process for 30 minutes: never leave one half done.
    await request(session, "POST", `/v3/login/cancel/${encodeURIComponent(loginId)}`, {
      timeoutMs: CANCEL_TIMEOUT_MS,
    }).catch(() => undefined);
    throw error;
  }
}

async function submitCredentials(
  session: Session,
  loginId: string,
  step: Step,
  credentials: BridgeCredentials,
): Promise<RelayLogin> {
  if (step.type !== "user_input") throw unexpectedStep(session, step);
  const input: Record<string, string> = {};
  for (const field of step.fields) input[field.id] = fieldValue(session, field, credentials);
  const answer = await request(
    session,
    "POST",
    `/v3/login/step/${encodeURIComponent(loginId)}/${encodeURIComponent(step.stepId)}/user_input`,
    { query: step.txnId === undefined ? {} : { txn_id: step.txnId }, body: input },
  );
  if (answer.status !== 200) throw stepFailure(session, answer);
  const next = parseStep(answer.body);
  if (next.type !== "complete" || next.userLoginId === undefined)
    throw unexpectedStep(session, next);
  return { loginId: next.userLoginId, remoteName: await loginName(session, next.userLoginId) };
}

/** The value for one field the bridge asks for, checked against its pattern. */
function fieldValue(session: Session, field: Field, credentials: BridgeCredentials): string {
  let value: string | undefined;
  if (credentials.network === "slack") {
    if (field.id === "bot_token") value = credentials.botToken;
    if (field.id === "app_token") value = credentials.appToken;
  } else if (credentials.network === "telegram" && field.type === "token") {
    // mautrix-telegram names the field after its step (fi.mau.telegram.login.bot_token).
    value = credentials.botToken;
  }
  if (value === undefined) {
    throw badRequest(
      `${session.bridge} asked for "${field.name}" (${field.id}), which a bot login cannot provide; check the bridge's version`,
    );
  }
  if (field.pattern !== undefined && !matches(field.pattern, value)) {
    throw badRequest(
      `${session.bridge} expects the ${field.name} to match ${field.pattern}; check the value you entered`,
    );
  }
  return value;
}

/** The bridge's patterns are Go regexps; one JavaScript cannot read is left to the bridge. */
function matches(pattern: string, value: string): boolean {
  try {
    return new RegExp(pattern).test(value);
  } catch {
    return true;
  }
}

/** What a failed step submission means (see provisioninglogin.go: doLoginStep, executeStep). */
function stepFailure(session: Session, answer: Answer): AppError {
  if (answer.status === 401 && AUTH_ERRCODES.has(answer.errcode ?? ""))
    return failure(session, answer, "logging in");
  if (
    answer.errcode === "M_BAD_STATE" ||
    answer.errcode === "M_NOT_FOUND" ||
    answer.status === 410
  ) {
    return badRequest(
      `${session.bridge} did not accept the login step (${answer.errcode ?? answer.status}: ${answer.error ?? "no reason given"}); nothing was logged in, try again`,
    );
  }
  const connectorError = answer.internalError ?? (answer.status < 500 ? answer.error : undefined);
  if (connectorError === undefined) return failure(session, answer, "logging in");
  return refused(session, connectorError);
}

function refused(session: Session, reason: string): AppError {
  const name = NETWORKS[session.network].displayName;
  if (TRANSPORT_FAILURE.test(reason)) {
    return new AppError(
      "unavailable",
      `${session.bridge} could not reach ${name}: ${reason}; try again later`,
    );
  }
  const hint = REFUSAL_HINTS[session.network];
  return badRequest(`${name} refused ${hint.what}: ${reason}. ${hint.check}`);
}

function unexpectedStep(session: Session, step: Step): AppError {
  return badRequest(
    `${session.bridge} asked for an unexpected step (${step.type} ${step.stepId}) instead of completing the login; check the bridge's version`,
  );
}

/** The login's remote name from whoami; the login is made, so a failure here only loses the name. */
async function loginName(session: Session, userLoginId: string): Promise<string | null> {
  try {
    const whoami = await request(session, "GET", "/v3/whoami");
    if (whoami.status !== 200) return null;
    const login = arrayOf(whoami.body.logins)
      .map(objectOf)
      .find((entry) => entry.id === userLoginId);
    return stringOf(login?.name) ?? null;
  } catch {
    return null;
  }
}

async function statusBridgev2(
  session: Session,
): Promise<{ loggedIn: boolean; loginId: string | null }> {
  const whoami = expectOk(
    session,
    await request(session, "GET", "/v3/whoami"),
    "reading its logins",
  );
  const logins = arrayOf(whoami.body.logins).map(objectOf);
  const usable = logins.find((login) => !UNUSABLE_LOGIN_STATES.has(stateOf(login)));
  // A login whose credentials went bad is still reported, so the caller can name it.
  const shown = usable ?? logins[0];
  return { loggedIn: usable !== undefined, loginId: stringOf(shown?.id) ?? null };
}

function stateOf(login: Record<string, unknown>): string {
  return stringOf(objectOf(login.state).state_event) ?? stringOf(login.state_event) ?? "";
}

function parseStep(body: Record<string, unknown>): Step {
  const fields = arrayOf(objectOf(body.user_input).fields).map((raw) => {
    const field = objectOf(raw);
    const id = stringOf(field.id) ?? "";
    return {
      type: stringOf(field.type) ?? "",
      id,
      name: stringOf(field.name) ?? id,
      pattern: stringOf(field.pattern) || undefined,
    };
  });
  return {
    type: stringOf(body.type) ?? "(none)",
    stepId: stringOf(body.step_id) ?? "",
    txnId: stringOf(body.txn_id) || undefined,
    fields,
    userLoginId: stringOf(objectOf(body.complete).user_login_id) || undefined,
  };
}

// ---- mautrix-discord v1 ----

async function loginDiscord(
  session: Session,
  credentials: DiscordCredentials,
  retried: boolean,
): Promise<RelayLogin> {
  const answer = await request(session, "POST", "/v1/login/token", {
    body: { token: `Bot ${credentials.botToken}` },
  });
  if (answer.status === 200 && answer.body.success === true) {
    const id = stringOf(answer.body.id);
    if (id === undefined) throw unexpectedAnswer(session, answer, "logging in");
    const username = stringOf(answer.body.username) ?? null;
    const discriminator = stringOf(answer.body.discriminator);
    // Discord dropped discriminators ("0") for most accounts; bots may still have one.
    const remoteName =
      username !== null && discriminator !== undefined && discriminator !== "0"
        ? `${username}#${discriminator}`
        : username;
    return { loginId: id, remoteName };
  }
  if (answer.status === 409 && answer.errcode === "FI.MAU.DISCORD.ALREADY_LOGGED_IN") {
    const current = await statusDiscord(session);
    const botId = discordBotId(credentials.botToken);
    if (current.loggedIn && botId !== undefined && current.loginId === botId) {
      return { loginId: botId, remoteName: null };
    }
    if (retried) throw failure(session, answer, "logging in");
    expectOk(
      session,
      await request(session, "POST", "/v1/logout"),
      "logging out the previous login",
    );
    return loginDiscord(session, credentials, true);
  }
  if (answer.status === 401 && !AUTH_ERRCODES.has(answer.errcode ?? "")) {
    throw refused(session, answer.error ?? "no reason given");
  }
  throw failure(session, answer, "logging in");
}

/** A bot token's first part is the bot's user id in base64: enough to tell whose login the bridge has. */
function discordBotId(token: string): string | undefined {
  const decoded = Buffer.from(token.split(".")[0] ?? "", "base64url").toString("utf8");
  return /^\d{5,25}$/.test(decoded) ? decoded : undefined;
}

async function statusDiscord(
  session: Session,
): Promise<{ loggedIn: boolean; loginId: string | null }> {
  const ping = expectOk(session, await request(session, "GET", "/v1/ping"), "reading its login");
  // respPing's Discord field has no json tag, so Go encodes it as "Discord".
  const discord = objectOf(ping.body.Discord ?? ping.body.discord);
  return { loggedIn: discord.logged_in === true, loginId: stringOf(discord.id) || null };
}

function badRequest(message: string): AppError {
  return new AppError("bad_request", message);
}

function secretsOf(credentials: BridgeCredentials): string[] {
  switch (credentials.network) {
    case "slack":
      return [credentials.botToken, credentials.appToken];
    case "discord":
      return [credentials.botToken];
    case "telegram":
      return [credentials.botToken, credentials.apiHash];
  }
}
