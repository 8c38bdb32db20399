import type { BridgeNetwork } from "./networks.ts";

/**
 * How a tenant admin makes the remote account the relay logs in with: the
 * portal shows it beside each connect form, chat shows it in
 * `help bridge connect`. Scopes and intents follow what the bridges use
 * (mautrix-slack's app manifest, mautrix-discord's relay webhooks,
 * mautrix-telegram's bot login); plain text, the template escapes it.
 */
export interface BridgeHowTo {
  /** One line: what to create. */
  readonly summary: string;
  readonly steps: readonly string[];
  /** Permissions, scopes or intents to grant, by name as the network's console shows them. */
  readonly grants: readonly string[];
}

/** Bot token scopes mautrix-slack's app manifest asks for (reading, posting as agents, files, reactions). */
const SLACK_BOT_SCOPES = [
  "channels:history",
  "channels:read",
  "channels:write.invites",
  "channels:write.topic",
  "chat:write",
  "chat:write.customize",
  "emoji:read",
  "files:read",
  "files:write",
  "groups:history",
  "groups:read",
  "groups:write",
  "groups:write.invites",
  "groups:write.topic",
  "im:history",
  "im:read",
  "im:write",
  "im:write.topic",
  "mpim:history",
  "mpim:read",
  "mpim:write",
  "mpim:write.topic",
  "pins:read",
  "pins:write",
  "reactions:read",
  "reactions:write",
  "team:read",
  "usergroups:read",
  "users:read",
  "users.profile:read",
  "users:read.email",
] as const;

export const HOW_TO: Readonly<Record<BridgeNetwork, BridgeHowTo>> = {
  slack: {
    summary: "A Slack app with Socket Mode, installed in your workspace.",
    steps: [
      "At api.slack.com/apps choose Create New App (from scratch is fine) for your workspace.",
      "Settings → Socket Mode: turn it on. Create the app-level token it asks for with the connections:write scope: that is the app token (xapp-…).",
      "OAuth & Permissions → Bot Token Scopes: add the scopes listed below. chat:write.customize lets each agent post under its own name and picture.",
      "Event Subscriptions: turn them on and subscribe to the bot events message.channels, message.groups, message.im, message.mpim, member_joined_channel, member_left_channel, channel_rename, reaction_added, reaction_removed, user_change and team_join.",
      "Install the app to the workspace; copy the Bot User OAuth Token (xoxb-…): that is the bot token.",
      "Invite the app into each channel agents should be in (/invite @your-app).",
    ],
    grants: SLACK_BOT_SCOPES,
  },
  discord: {
    summary: "A Discord bot invited to your server.",
    steps: [
      "At discord.com/developers/applications choose New Application, then open Bot.",
      "Under Privileged Gateway Intents turn on Message Content Intent and Server Members Intent: without them the bot cannot read messages or see who is in the server.",
      "Reset Token and copy it: that is the bot token (three parts separated by dots).",
      "OAuth2 → URL Generator: tick the scope bot and the bot permissions listed below, open the URL and add the bot to your server.",
      "Manage Webhooks lets the bridge make one webhook per channel, so each agent posts with its own name and avatar.",
    ],
    grants: [
      "View Channels",
      "Send Messages",
      "Send Messages in Threads",
      "Create Public Threads",
      "Read Message History",
      "Embed Links",
      "Attach Files",
      "Add Reactions",
      "Use External Emojis",
      "Manage Webhooks",
      "Manage Messages",
    ],
  },
  telegram: {
    summary: "A Telegram bot from BotFather, and an API id for the bridge.",
    steps: [
      "Talk to @BotFather: /newbot, pick a name and username, and copy the token it gives (digits:letters): that is the bot token.",
      "Still with @BotFather: /setprivacy, choose your bot, then Disable, so the bot sees every message in groups and not only commands.",
      "At my.telegram.org sign in, open API development tools and create an application: copy its api_id (a number) and api_hash (32 characters).",
      "Add the bot to each group agents should be in. Agents' messages show as the bot, prefixed with the agent's name.",
    ],
    grants: ["Group privacy: disabled (/setprivacy)"],
  },
};
