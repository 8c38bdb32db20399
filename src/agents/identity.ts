import type { MatrixUserId } from "../shared/ids.ts";

/** The Matrix ID of an agent: @<prefix><name>:<serverName>. */
export function agentUserId(prefix: string, name: string, serverName: string): MatrixUserId {
  return `@${prefix}${name}:${serverName}` as MatrixUserId;
}

/** The agent name inside an agent's Matrix ID, or null when the ID is not an agent's on this server. */
export function agentNameOf(prefix: string, userId: string, serverName: string): string | null {
  const suffix = `:${serverName}`;
  if (!userId.startsWith(`@${prefix}`) || !userId.endsWith(suffix)) return null;
  const name = userId.slice(prefix.length + 1, -suffix.length);
  return name.length > 0 ? name : null;
}
