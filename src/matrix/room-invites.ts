import type { RoomInviter } from "../bridges/service.ts";
import { AppError } from "../shared/errors.ts";
import type { MatrixUserId, RoomId } from "../shared/ids.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import { appserviceRequest, matrixErrorOf } from "./appservice-client.ts";

/**
 * RoomInviter over the client-server API with the tenant's appservice token
 * (`user_id=` masquerades as the inviter), like MatrixMedia: the portal has
 * no matrix-bot-sdk Appservice of its own.
 */
export class MatrixRoomInvites implements RoomInviter {
  readonly #fetch: typeof fetch;

  constructor(fetchImpl: typeof fetch = fetch) {
    this.#fetch = fetchImpl;
  }

  async invite(
    homeserver: TenantHomeserver,
    inviter: MatrixUserId,
    roomId: RoomId,
    invitee: MatrixUserId,
  ): Promise<void> {
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite?user_id=${encodeURIComponent(inviter)}`;
    const response = await appserviceRequest(this.#fetch, homeserver, path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user_id: invitee }),
    });
    if (response.ok) return;
    const body = await matrixErrorOf(response);
    const reason = body.errcode ?? `HTTP ${String(response.status)}`;
    // 4xx: the room said no (relay not in it, no invite power, agent banned); retrying will not help.
    if (response.status >= 400 && response.status < 500)
      throw new AppError(
        "conflict",
        `the homeserver refused the invitation (${reason}${body.error === undefined ? "" : `: ${body.error}`})`,
      );
    throw new AppError(
      "upstream_failed",
      `the homeserver could not send the invitation (${reason})`,
    );
  }
}
