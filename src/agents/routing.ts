import { BRIDGE_NETWORKS, NETWORKS } from "../bridges/networks.ts";
import type { AgentId, MatrixUserId } from "../shared/ids.ts";
import type { IncomingMessage } from "./ports.ts";
import type { AgentIdentity, RoomTriggerPolicy, TriggerPolicy } from "./types.ts";
import { escapeRegex } from "../shared/text.ts";

/** The tenant's accounts that speak for software, not for a person. */
export interface ServiceAccounts {
  /** The tenant's homeserver: bridge bots are their networks' bot localparts here. */
  readonly serverName: string;
  readonly botUserId: MatrixUserId;
  /** The relay account the bridges post agents' messages for. */
  readonly relayUserId: MatrixUserId;
}

export interface RoutingInput {
  readonly message: IncomingMessage;
  /** Agents joined to the room. */
  readonly agents: readonly AgentIdentity[];
  readonly isDirect: boolean;
  /** Sender of the event the message replies to, when known. */
  readonly repliedToSender: MatrixUserId | null;
  /** This room's overrides of agents' trigger policies. */
  readonly roomPolicies?: ReadonlyMap<AgentId, RoomTriggerPolicy>;
  readonly serviceAccounts: ServiceAccounts;
}

/**
 * Whether `sender` is software rather than a person: an agent, the service
 * bot, the relay account or a bridge's bot. Answering one could start a
 * loop (a bridge bot's "not logged in" notice, an agent relayed back), so
 * none of them is answered, whatever the msgtype.
 */
export function isServiceSender(
  sender: MatrixUserId,
  agents: readonly AgentIdentity[],
  accounts: ServiceAccounts,
): boolean {
  if (sender === accounts.botUserId || sender === accounts.relayUserId) return true;
  if (agents.some((identity) => identity.userId === sender)) return true;
  return BRIDGE_NETWORKS.some(
    (network) => sender === `@${NETWORKS[network].botLocalpart}:${accounts.serverName}`,
  );
}

/** Whether the text names the agent: its Matrix ID, display name or name, as a whole word. */
function namesAgent(text: string, identity: AgentIdentity): boolean {
  const candidates = [identity.userId, identity.agent.displayName, identity.agent.name];
  return candidates.some((candidate) =>
    new RegExp(`(^|[^\\p{L}\\p{N}_])@?${escapeRegex(candidate)}($|[^\\p{L}\\p{N}_])`, "iu").test(
      text,
    ),
  );
}

function isAddressed(input: RoutingInput, identity: AgentIdentity): boolean {
  const { message } = input;
  if (message.mentionedUserIds?.includes(identity.userId) === true) return true;
  if (input.repliedToSender === identity.userId) return true;
  if (namesAgent(message.body, identity)) return true;
  return (
    message.formattedBody !== null && pilledUserIds(message.formattedBody).has(identity.userId)
  );
}

/** Matrix IDs linked as pills (https://matrix.to/#/@user:server), decoded and exact. */
function pilledUserIds(html: string): Set<string> {
  const ids = new Set<string>();
  for (const match of html.matchAll(/href=["']https:\/\/matrix\.to\/#\/([^"'?]+)/gi)) {
    try {
      ids.add(decodeURIComponent(match[1] ?? ""));
    } catch {
      // A malformed escape is no mention.
    }
  }
  return ids;
}

/**
 * Which agents answer a message. Only people are answered: messages from
 * agents, the service bot, the relay account and bridge bots get no answer
 * (isServiceSender), so agents never answer each other or a bridge in a
 * loop. Notices are never answered: bots and bridges speak in notices.
 * A room's override replaces the agent's own policy there (`off` silences
 * it). A message addressed to agents is theirs alone: those willing answer,
 * nobody else does, even when the addressed stay silent; otherwise
 * every agent answers in a DM, and in a group only agents whose policy is
 * `all`. Agents with policy `dms` never answer in groups.
 */
export function chooseResponders(input: RoutingInput): AgentIdentity[] {
  if (input.message.msgtype === "m.notice") return [];
  if (isServiceSender(input.message.sender, input.agents, input.serviceAccounts)) return [];
  const policyOf = (identity: AgentIdentity): TriggerPolicy | "off" =>
    input.roomPolicies?.get(identity.agent.id) ?? identity.agent.triggerPolicy;
  const active = input.agents.filter((identity) => identity.agent.status === "active");
  const willing = active.filter((identity) => {
    const policy = policyOf(identity);
    return policy !== "off" && (input.isDirect || policy !== "dms");
  });
  // A message meant for particular agents is theirs alone, even if they stay silent here.
  const addressed = active.filter((identity) => isAddressed(input, identity));
  if (addressed.length > 0) return addressed.filter((identity) => willing.includes(identity));
  if (input.isDirect) return willing;
  return willing.filter((identity) => policyOf(identity) === "all");
}

/** The message text without a leading address to the agent ("Ada, ...", "@ai_ada:server: ..."). */
export function stripAddress(text: string, identity: AgentIdentity): string {
  const names = [identity.userId, identity.agent.displayName, identity.agent.name]
    .map(escapeRegex)
    .join("|");
  // The name must end a word: "adamant" does not start with an address to "ada".
  return text
    .replace(new RegExp(`^\\s*@?(?:${names})(?![\\p{L}\\p{N}_])\\s*[:,]?\\s*`, "iu"), "")
    .trim();
}
