import type { FastifyReply } from "fastify";
import { z } from "zod";
import { HOW_TO } from "../../bridges/how-to.ts";
import { BRIDGE_NETWORKS, type BridgeNetwork } from "../../bridges/networks.ts";
import { badRequest } from "../../shared/errors.ts";
import type { RoomId } from "../../shared/ids.ts";
import { requireRole, type TenantAccess } from "../access.ts";
import { RoomIdSchema } from "../api/bridges.ts";
import { FormBody, showRefusal } from "../forms.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { SlugParams } from "./tenants.ts";

const NetworkParams = SlugParams.extend({ network: z.enum(BRIDGE_NETWORKS) });

/** The connect form's fields per network, in the order shown; the service's schema judges them. */
const CREDENTIAL_FIELDS: Readonly<
  Record<BridgeNetwork, readonly { name: string; label: string; secret: boolean }[]>
> = {
  slack: [
    { name: "botToken", label: "Bot token (xoxb-…)", secret: true },
    { name: "appToken", label: "App-level token (xapp-…)", secret: true },
  ],
  discord: [{ name: "botToken", label: "Bot token", secret: true }],
  telegram: [
    { name: "botToken", label: "Bot token from BotFather", secret: true },
    { name: "apiId", label: "api_id", secret: false },
    { name: "apiHash", label: "api_hash", secret: true },
  ],
};

/** The network's credential fields from a posted form (nothing else: the schema is strict). */
function credentialsFrom(
  network: BridgeNetwork,
  form: Readonly<Record<string, string>>,
): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const { name } of CREDENTIAL_FIELDS[network]) {
    const value = form[name];
    if (value !== undefined) fields[name] = value;
  }
  return fields;
}

/**
 * The bridges page: each network's status, connect form (write-only
 * credentials), disconnect, bridged rooms and their agents, and how to make
 * the remote app or bot. Members look; admins change.
 */
export function bridgePages(app: PortalApp, deps: PortalDeps): void {
  const pageData = async (checked: TenantAccess) => {
    const { tenant, role } = checked;
    const canEdit = role !== "member";
    return {
      title: `Bridges · ${tenant.name}`,
      tenant,
      role,
      canEdit,
      bridges: await deps.bridges.list(tenant.id),
      fields: CREDENTIAL_FIELDS,
      howTo: HOW_TO,
      agents: canEdit
        ? (await deps.agents.list(tenant.id)).map((agent) => ({
            name: agent.name,
            displayName: agent.displayName,
          }))
        : [],
    };
  };
  /** Runs a form's action; a refusal re-renders the page with the message (and nothing typed). */
  const act = async (
    reply: FastifyReply,
    checked: TenantAccess,
    action: () => Promise<string>,
  ): Promise<FastifyReply> => {
    let flash: string;
    try {
      flash = await action();
    } catch (error) {
      return showRefusal(error, async (message, status) =>
        reply.page("bridges", { ...(await pageData(checked)), error: message }, status),
      );
    }
    return reply.redirectWithFlash(`/t/${checked.tenant.slug}/bridges`, flash);
  };

  app.get("/t/:slug/bridges", { schema: { params: SlugParams } }, async (request, reply) =>
    reply.page("bridges", await pageData(requireRole(request, "member"))),
  );

  app.post(
    "/t/:slug/bridges/:network",
    { schema: { params: NetworkParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const { network } = request.params;
      return act(reply, checked, async () => {
        const status = await deps.bridges.connect(
          checked.tenant.id,
          network,
          credentialsFrom(network, request.body),
          checked.actor,
        );
        return `${status.displayName} credentials saved (encrypted; they are not shown again). The bridge starts and logs in within a minute.`;
      });
    },
  );

  app.post(
    "/t/:slug/bridges/:network/disconnect",
    { schema: { params: NetworkParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const { network } = request.params;
      return act(reply, checked, async () => {
        // Works without JavaScript: the form's checkbox is the confirmation.
        if (request.body.confirm !== "yes")
          throw badRequest("confirm: tick the box to confirm the disconnect");
        await deps.bridges.disconnect(checked.tenant.id, network, checked.actor);
        return "Disconnecting: the credentials are erased and the bridge is being removed.";
      });
    },
  );

  app.post(
    "/t/:slug/bridges/:network/agents",
    { schema: { params: NetworkParams, body: FormBody } },
    async (request, reply) => {
      const checked = requireRole(request, "admin");
      const { network } = request.params;
      return act(reply, checked, async () => {
        const room = RoomIdSchema.safeParse(request.body.roomId ?? "");
        if (!room.success) throw badRequest("roomId: must be a Matrix room ID (!…:server)");
        const agent = request.body.agent ?? "";
        await deps.bridges.inviteAgent(
          checked.tenant.id,
          network,
          room.data as RoomId,
          agent,
          checked.actor,
        );
        return `Invited ${agent}; it joins in a moment.`;
      });
    },
  );
}
