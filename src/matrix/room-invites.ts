import type { RoomInviter } from "../bridges/service.ts";
import { AppError } from "../shared/errors.ts";
import type { MatrixUserId, RoomId } from "../shared/ids.ts";
import type { TenantHomeserver } from "../tenants/types.ts";

/** One invite; a homeserver that takes longer is not answering. */
const INVITE_TIMEOUT_MS = 15_000;

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
    let response: Response;
    try {
      response = await this.#fetch(`${homeserver.clientUrl}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${homeserver.asToken}`,
        },
        body: JSON.stringify({ user_id: invitee }),
        signal: AbortSignal.timeout(INVITE_TIMEOUT_MS),
      });
    } catch (error) {
      throw new AppError(
        "upstream_failed",
        `the tenant's homeserver (${homeserver.serverName}) could not be reached; try again in a moment`,
        { cause: error },
      );
    }
    if (response.ok) return;
    const body = (await response.json().catch(() => ({}))) as { errcode?: string; error?: string };
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
