import { z } from "zod";

/**
 * The remote networks Switchboard bridges to, and what differs between them.
 * Everything network-specific that the rest of the code needs (names,
 * namespaces, which provisioning API, message limits, how relayed messages
 * carry the agent's name, which credentials the relay login takes) lives in
 * this one table, so adding a network is one entry here plus its config
 * template in bridges/.
 */

export const BRIDGE_NETWORKS = ["slack", "discord", "telegram"] as const;
export type BridgeNetwork = (typeof BRIDGE_NETWORKS)[number];

export function isBridgeNetwork(value: string): value is BridgeNetwork {
  return (BRIDGE_NETWORKS as readonly string[]).includes(value);
}

/**
 * Which provisioning API the bridge speaks: mautrix-go's bridgev2
 * (`/_matrix/provision/v3/login/...`: flows, start, user_input steps) or
 * mautrix-discord's own (`/_matrix/provision/v1/login/token`).
 */
export type ProvisioningApi = "bridgev2" | "discord-v1";

/** How a relayed agent message shows who wrote it on the remote side. */
export type RelayNameStyle =
  /** Slack: chat.postMessage with a custom username (and icon) per message. */
  | "per-message-name"
  /** Discord: a webhook per room, posting with the agent's name and avatar. */
  | "webhook"
  /** Telegram: the bot posts "Name: text". */
  | "name-prefix";

export interface NetworkDescriptor {
  readonly network: BridgeNetwork;
  readonly displayName: string;
  /** mautrix project name, e.g. mautrix-slack (also the local binary's default name). */
  readonly bridgeName: string;
  readonly api: ProvisioningApi;
  /** Localpart prefix of the bridge's ghosts (its username_template without `{{.}}`). */
  readonly ghostPrefix: string;
  /** Localpart of the bridge's bot user. */
  readonly botLocalpart: string;
  /** Prefix of bridge commands in portal rooms. */
  readonly commandPrefix: string;
  /** The bridge's customary appservice port (docker driver; the local driver picks free ports). */
  readonly defaultPort: number;
  /** The bridge's official image (docker driver; configurable per deployment). */
  readonly defaultImage: string;
  /**
   * Longest message the network accepts, in characters, after the bridge's
   * conversion: answers are split (never cut) to fit.
   */
  readonly maxMessageChars: number;
  /** Whether Matrix threads map to the network's threads (else replies are used). */
  readonly threads: boolean;
  readonly relayNames: RelayNameStyle;
  /** bridgev2 login flow used for the relay (the network's bot/app flow). */
  readonly loginFlowId: string;
  /** Command the relay account sends in a portal room to make itself that room's relay. */
  readonly setRelayCommand: string;
  /** Credentials of the relay login, as the portal and chat take them. */
  readonly credentials: z.ZodType<BridgeCredentials>;
}

/** A Slack app installed in the workspace, with Socket Mode (bridgev2 "app" login). */
export interface SlackCredentials {
  readonly network: "slack";
  readonly botToken: string;
  readonly appToken: string;
}

/** A Discord bot invited to the server (mautrix-discord token login with a "Bot " token). */
export interface DiscordCredentials {
  readonly network: "discord";
  readonly botToken: string;
}

/**
 * A Telegram bot from BotFather (bridgev2 "bot" login). MTProto also needs
 * an api_id/api_hash pair from my.telegram.org: they go into the bridge's
 * config, not the login.
 */
export interface TelegramCredentials {
  readonly network: "telegram";
  readonly botToken: string;
  readonly apiId: number;
  readonly apiHash: string;
}

export type BridgeCredentials = SlackCredentials | DiscordCredentials | TelegramCredentials;

/** The patterns the bridges themselves check (their login steps' `pattern`), so mistakes are caught before a bridge is started. */
const SLACK_BOT_TOKEN = /^xoxb-[A-Za-z0-9-]{10,250}$/;
const SLACK_APP_TOKEN = /^xapp-[A-Za-z0-9-]{10,250}$/;
const TELEGRAM_BOT_TOKEN = /^\d{1,20}:[A-Za-z0-9_-]{35}$/;
const TELEGRAM_API_HASH = /^[0-9a-f]{32}$/;
/** Discord bot tokens: three base64url parts separated by dots. */
const DISCORD_BOT_TOKEN = /^[A-Za-z0-9_-]{20,100}\.[A-Za-z0-9_-]{4,20}\.[A-Za-z0-9_-]{20,100}$/;

const trimmed = (pattern: RegExp, message: string) => z.string().trim().regex(pattern, message);

const slackCredentials = z.strictObject({
  network: z.literal("slack"),
  botToken: trimmed(SLACK_BOT_TOKEN, "must be the app's bot token (starts with xoxb-)"),
  appToken: trimmed(SLACK_APP_TOKEN, "must be an app-level token (starts with xapp-)"),
});
const discordCredentials = z.strictObject({
  network: z.literal("discord"),
  botToken: trimmed(
    DISCORD_BOT_TOKEN,
    "must be the bot's token from the Discord developer portal (three parts separated by dots)",
  ),
});
const telegramCredentials = z.strictObject({
  network: z.literal("telegram"),
  botToken: trimmed(TELEGRAM_BOT_TOKEN, "must be the token BotFather gave (digits:35 characters)"),
  apiId: z.coerce
    .number({ message: "must be the numeric api_id from my.telegram.org" })
    .int()
    .min(1)
    .max(2 ** 31 - 1),
  apiHash: trimmed(TELEGRAM_API_HASH, "must be the 32-character api_hash from my.telegram.org"),
});

export const NETWORKS: Readonly<Record<BridgeNetwork, NetworkDescriptor>> = {
  slack: {
    network: "slack",
    displayName: "Slack",
    bridgeName: "mautrix-slack",
    api: "bridgev2",
    ghostPrefix: "slack_",
    botLocalpart: "slackbot",
    commandPrefix: "!slack",
    defaultPort: 29335,
    defaultImage: "dock.mau.dev/mautrix/slack:v26.08",
    // Slack accepts 40,000 characters but truncates and folds long posts; 4,000 is its guidance.
    maxMessageChars: 4000,
    threads: true,
    relayNames: "per-message-name",
    loginFlowId: "app",
    setRelayCommand: "!slack set-relay",
    credentials: slackCredentials,
  },
  discord: {
    network: "discord",
    displayName: "Discord",
    bridgeName: "mautrix-discord",
    api: "discord-v1",
    ghostPrefix: "discord_",
    botLocalpart: "discordbot",
    commandPrefix: "!discord",
    defaultPort: 29334,
    defaultImage: "dock.mau.dev/mautrix/discord:v0.7.7",
    maxMessageChars: 2000,
    threads: true,
    relayNames: "webhook",
    loginFlowId: "token",
    // A webhook per room, made by the bridge: relayed messages carry the agent's name and avatar.
    setRelayCommand: "!discord set-relay --create Switchboard",
    credentials: discordCredentials,
  },
  telegram: {
    network: "telegram",
    displayName: "Telegram",
    bridgeName: "mautrix-telegram",
    api: "bridgev2",
    ghostPrefix: "telegram_",
    botLocalpart: "telegrambot",
    commandPrefix: "!tg",
    defaultPort: 29317,
    defaultImage: "dock.mau.dev/mautrix/telegram:v26.08",
    maxMessageChars: 4096,
    threads: false,
    relayNames: "name-prefix",
    loginFlowId: "bot",
    setRelayCommand: "!tg set-relay",
    credentials: telegramCredentials,
  },
};

/** Parses credentials for `network`; throws a ZodError naming the wrong field. */
export function parseCredentials(network: BridgeNetwork, input: unknown): BridgeCredentials {
  const body = typeof input === "object" && input !== null ? input : {};
  return NETWORKS[network].credentials.parse({ ...body, network });
}

/** The network whose ghost or bot `localpart` is, if any. */
export function networkOfLocalpart(localpart: string): BridgeNetwork | undefined {
  return BRIDGE_NETWORKS.find(
    (network) =>
      localpart.startsWith(NETWORKS[network].ghostPrefix) ||
      localpart === NETWORKS[network].botLocalpart,
  );
}
