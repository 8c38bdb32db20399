import { z } from "zod";
import { BRIDGE_NETWORKS } from "../../bridges/networks.ts";
import type { BridgeStatus } from "../../bridges/service.ts";
import type { RoomId } from "../../shared/ids.ts";
import { requireRole } from "../access.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

export const NetworkParams = TenantParams.extend({ network: z.enum(BRIDGE_NETWORKS) });
/** A Matrix room ID: `!opaque:server`. */
export const RoomIdSchema = z
  .string()
  .max(255)
  .regex(/^![^\s:]+:\S+$/, "must be a Matrix room ID (!…:server)");
const RoomParams = NetworkParams.extend({ roomId: RoomIdSchema });

const BridgedRoomView = z.object({
  roomId: z.string(),
  remoteName: z.string().nullable().describe("the remote channel's name, as the bridge set it"),
  relayState: z.enum(["pending", "set", "failed"]),
  lastError: z.string().nullable(),
  agents: z.array(z.object({ name: z.string(), displayName: z.string() })),
});

const BridgeView = z.object({
  network: z.enum(BRIDGE_NETWORKS),
  displayName: z.string(),
  configured: z.boolean().describe("false: never connected (or its removal finished)"),
  desired: z.enum(["enabled", "disabled"]).nullable().describe("disabled: being disconnected"),
  state: z
    .enum([
      "pending",
      "starting",
      "running",
      "logging_in",
      "connected",
      "login_failed",
      "failed",
      "stopped",
      "removing",
    ])
    .nullable(),
  running: z.boolean(),
  loggedIn: z.boolean(),
  relaySet: z.boolean(),
  relayRemoteName: z
    .string()
    .nullable()
    .describe("the remote account the relay is logged in as; credentials are never returned"),
  lastError: z.string().nullable(),
  connectedAt: z.string().nullable().describe("ISO 8601"),
  updatedAt: z.string().nullable().describe("ISO 8601"),
  rooms: z.array(BridgedRoomView),
});
type BridgeView = z.infer<typeof BridgeView>;

/**
 * What PUT takes: the fields of every network, bounded; the service's own
 * per-network schema then judges them (and refuses fields the network does
 * not take), with the same messages as the portal and chat.
 */
const CredentialsBody = z.strictObject({
  botToken: z
    .string()
    .max(512)
    .describe(
      "Slack: the bot token (xoxb-…); Discord: the bot's token; Telegram: BotFather's token",
    ),
  appToken: z.string().max(512).optional().describe("Slack only: the app-level token (xapp-…)"),
  apiId: z
    .union([z.number().int(), z.string().max(20)])
    .optional()
    .describe("Telegram only: api_id from my.telegram.org"),
  apiHash: z.string().max(64).optional().describe("Telegram only: api_hash from my.telegram.org"),
});

const InviteBody = z.strictObject({
  agent: z.string().min(1).max(64).describe("the agent's name"),
});

function bridgeView(status: BridgeStatus): BridgeView {
  return {
    ...status,
    rooms: status.rooms.map((room) => ({ ...room, agents: [...room.agents] })),
    connectedAt: status.connectedAt?.toISOString() ?? null,
    updatedAt: status.updatedAt?.toISOString() ?? null,
  };
}

/** Credentials with the fields that were left out dropped (the per-network schemas are strict). */
function definedFields(body: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== undefined));
}

/** Bridges over JSON: the same BridgeService as the pages and chat commands. */
export function bridgeApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants/:tenantId/bridges",
    {
      schema: {
        tags: ["bridges"],
        summary: "Each network's bridge: status, relay account, bridged rooms and their agents",
        params: TenantParams,
        response: { 200: z.object({ items: z.array(BridgeView) }) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      return { items: (await deps.bridges.list(tenant.id)).map(bridgeView) };
    },
  );

  app.put(
    "/api/v1/tenants/:tenantId/bridges/:network",
    {
      schema: {
        tags: ["bridges"],
        summary: "Connect a network, or give its bridge new credentials (admins)",
        description:
          "Slack takes botToken and appToken, Discord botToken, Telegram botToken, apiId and apiHash. The credentials are stored encrypted and never returned; the provisioner starts the bridge and logs its relay in (watch state). 403 limit_reached when the plan has no room for another bridge.",
        params: NetworkParams,
        body: CredentialsBody,
        response: { 200: BridgeView },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "admin");
      const status = await deps.bridges.connect(
        tenant.id,
        request.params.network,
        definedFields(request.body),
        actor,
      );
      return bridgeView(status);
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/bridges/:network",
    {
      schema: {
        tags: ["bridges"],
        summary: "Disconnect a network (admins): credentials erased, the bridge removed",
        params: NetworkParams,
        response: { 204: z.null() },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      await deps.bridges.disconnect(tenant.id, request.params.network, actor);
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/bridges/:network/rooms/:roomId/agents",
    {
      schema: {
        tags: ["bridges"],
        summary: "Invite an agent into a bridged room (admins); it joins on the invite",
        params: RoomParams,
        body: InviteBody,
        response: { 202: z.object({ invited: z.string() }) },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const { network, roomId } = request.params;
      await deps.bridges.inviteAgent(
        tenant.id,
        network,
        roomId as RoomId,
        request.body.agent,
        actor,
      );
      return reply.code(202).send({ invited: request.body.agent });
    },
  );
}
