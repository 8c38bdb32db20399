import { z } from "zod";
import { BRIDGE_NETWORKS, NETWORKS, type BridgeNetwork } from "../../bridges/networks.ts";
import type { BridgeStatus } from "../../bridges/service.ts";
import { AppError, badRequest, isAppError } from "../../shared/errors.ts";
import { bulletList, code, define, type CommandServices } from "../define.ts";
import type { AnyCommand } from "../types.ts";

const network = z.enum(BRIDGE_NETWORKS).describe("slack, discord or telegram");

/** What `bridge connect <network>` takes after the network, in order. */
const CREDENTIAL_ORDER: Readonly<Record<BridgeNetwork, readonly string[]>> = {
  slack: ["botToken", "appToken"],
  discord: ["botToken"],
  telegram: ["botToken", "apiId", "apiHash"],
};
const SPOKEN: Readonly<Record<string, string>> = {
  botToken: "<bot token>",
  appToken: "<app token>",
  apiId: "<api_id>",
  apiHash: "<api_hash>",
};

function state(status: BridgeStatus): string {
  if (!status.configured) return "not connected";
  if (status.desired === "disabled") return "disconnecting";
  const facts = [
    status.running ? "running" : "not running",
    status.loggedIn
      ? `logged in${status.relayRemoteName === null ? "" : ` as ${code(status.relayRemoteName)}`}`
      : "not logged in",
    status.relaySet ? "relay set" : "relay not set",
  ];
  return `${status.state ?? "?"} (${facts.join(", ")})`;
}

function summaryLine(status: BridgeStatus): string {
  const rooms = status.configured ? `; ${String(status.rooms.length)} bridged channel(s)` : "";
  const error = status.lastError === null ? "" : `; last error: ${status.lastError}`;
  return `**${status.displayName}**: ${state(status)}${rooms}${error}`;
}

/** Bridges by chat: the same BridgeService as the portal's Bridges page. Admins only. */
export function bridgeCommands(services: CommandServices): AnyCommand[] {
  const bridgesPage = (tenantSlug: string): string =>
    `${services.portalUrl}/t/${tenantSlug}/bridges`;
  const tokenNote = (tenantSlug: string): string =>
    `Messages holding tokens are removed as soon as I read them, but the homeserver may keep removed content for a while: the portal's Bridges page (${bridgesPage(tenantSlug)}) is the safer place for tokens.`;

  return [
    define({
      words: ["bridge", "list"],
      summary: "Slack, Discord and Telegram: what is connected and how it is doing",
      positional: [],
      schema: z.strictObject({}),
      permission: "admin",
      examples: ["bridge list"],
      async run(context) {
        const all = await services.bridges.list(context.tenant.id);
        return {
          text: `${bulletList(all.map(summaryLine), "")}\n\nDetails: \`bridge status <network>\`. Connect: \`help bridge connect\`.`,
        };
      },
    }),
    define({
      words: ["bridge", "status"],
      summary: "one bridge's state, relay account, bridged channels and their agents",
      positional: [{ name: "network" }],
      schema: z.strictObject({ network }),
      permission: "admin",
      examples: ["bridge status slack"],
      async run(context, args) {
        const status = await services.bridges.status(context.tenant.id, args.network);
        const rooms = status.rooms.map((room) => {
          const agents =
            room.agents.length === 0
              ? "no agents"
              : room.agents.map((agent) => agent.displayName).join(", ");
          return `${room.remoteName ?? "(unnamed)"} ${code(room.roomId)}: relay ${room.relayState}; ${agents}`;
        });
        const connectedSince =
          status.connectedAt === null
            ? ""
            : `\nConnected since ${status.connectedAt.toISOString()}.`;
        const error = status.lastError === null ? "" : `\nLast error: ${status.lastError}`;
        return {
          text: `${summaryLine(status)}${connectedSince}${error}\n\n${bulletList(rooms, status.configured ? "No bridged channels yet." : `Connect it with \`help bridge connect\`.`)}`,
        };
      },
    }),
    define({
      words: ["bridge", "connect"],
      summary:
        "connect Slack, Discord or Telegram with its tokens (the message is removed at once)",
      description: `Slack: \`bridge connect slack <bot token> <app token>\`; Discord: \`bridge connect discord <bot token>\`; Telegram: \`bridge connect telegram <bot token> <api_id> <api_hash>\`. The tokens are encrypted and never shown again. Your message is removed as soon as I read it, but the homeserver may keep removed content for a while: the portal's Bridges page is the safer place to paste tokens, and it explains how to make the Slack app, Discord bot or Telegram bot.`,
      positional: [{ name: "network" }, { name: "credentials", rest: true }],
      schema: z.strictObject({
        network,
        credentials: z
          .string()
          .max(2000)
          .describe("the tokens, separated by spaces, in the order the description gives"),
      }),
      permission: "admin",
      secret: true,
      examples: [
        "bridge connect slack xoxb-… xapp-…",
        "bridge connect discord MTE…",
        "bridge connect telegram 123456:AA… 12345 0123456789abcdef0123456789abcdef",
      ],
      async run(context, args) {
        const note = tokenNote(context.tenant.slug);
        try {
          const input = credentialsInput(args.network, args.credentials);
          const status = await services.bridges.connect(
            context.tenant.id,
            args.network,
            input,
            context.by,
          );
          return {
            text: `Saved the ${status.displayName} credentials (encrypted). The bridge starts and logs in within a minute: check with \`bridge status ${args.network}\`.\n\n${note}`,
          };
        } catch (error) {
          if (isAppError(error) && error.code !== "internal")
            throw new AppError(error.code, `${error.message}\n\n${note}`, {
              httpStatus: error.httpStatus,
            });
          throw error;
        }
      },
    }),
    define({
      words: ["bridge", "disconnect"],
      summary: "disconnect a network: its credentials are erased and the bridge removed",
      positional: [{ name: "network" }, { name: "confirm" }],
      schema: z.strictObject({
        network,
        confirm: z.literal("confirm").optional().describe('the word "confirm"'),
      }),
      permission: "admin",
      examples: ["bridge disconnect telegram confirm"],
      async run(context, args) {
        const { displayName } = NETWORKS[args.network];
        if (args.confirm === undefined)
          return {
            text: `This erases the ${displayName} credentials and removes the bridge; agents stop talking there. To go ahead, send \`bridge disconnect ${args.network} confirm\`.`,
            notice: true,
          };
        await services.bridges.disconnect(context.tenant.id, args.network, context.by);
        return {
          text: `Disconnecting ${displayName}: the credentials are erased and the bridge is being removed.`,
        };
      },
    }),
  ];
}

/** The words after the network, as the network's credential fields; a wrong count says what is expected. */
function credentialsInput(network: BridgeNetwork, text: string): Record<string, string> {
  const order = CREDENTIAL_ORDER[network];
  const words = text
    .trim()
    .split(/\s+/u)
    .filter((word) => word !== "");
  if (words.length !== order.length)
    throw badRequest(
      `${NETWORKS[network].displayName} takes ${order.map((field) => SPOKEN[field] ?? field).join(" ")} (${String(order.length)} value${order.length === 1 ? "" : "s"}); got ${String(words.length)}`,
    );
  return Object.fromEntries(order.map((field, index) => [field, words[index] ?? ""]));
}
