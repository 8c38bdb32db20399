import type { MatrixUserId, RoomId, TenantId } from "../shared/ids.ts";
import type { ChatGateway } from "./ports.ts";

/** Rooms with at most this many joined members are one person talking to us (a DM). */
export const DIRECT_ROOM_MAX_MEMBERS = 2;
const MEMBER_COUNT_CACHE_MS = 60_000;

/**
 * Whether a room is a DM by its size, asked of the homeserver at most once a
 * minute per room and forgotten when its membership changes. Shared by the
 * agents and the service bot so they ask once between them.
 */
export class RoomSizes {
  readonly #counts = new Map<string, { count: number; at: number }>();

  async isDirect(
    chat: ChatGateway,
    asUser: MatrixUserId,
    tenantId: TenantId,
    roomId: RoomId,
  ): Promise<boolean> {
    const key = `${tenantId}/${roomId}`;
    const cached = this.#counts.get(key);
    if (cached !== undefined && Date.now() - cached.at < MEMBER_COUNT_CACHE_MS)
      return cached.count <= DIRECT_ROOM_MAX_MEMBERS;
    const count = await chat.joinedMemberCount(asUser, roomId);
    this.#counts.set(key, { count, at: Date.now() });
    return count <= DIRECT_ROOM_MAX_MEMBERS;
  }

  /** Someone joined or left: the next question goes to the homeserver. */
  forget(tenantId: TenantId, roomId: RoomId): void {
    this.#counts.delete(`${tenantId}/${roomId}`);
  }
}
