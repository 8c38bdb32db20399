import type { MatrixUserId, RoomId } from "../shared/ids.ts";

/** One state event of a room, as the client-server API returns it. */
export interface RoomStateEvent {
  readonly type: string;
  readonly state_key: string;
  readonly sender: string;
  readonly content: Readonly<Record<string, unknown>>;
}

/**
 * Reading a room's current state on the tenant's homeserver, as one of the
 * service's appservice users (implemented by src/matrix/room-state.ts).
 */
export interface RoomStateReader {
  /**
   * The room's state as `asUser` sees it; null when `asUser` may not see it
   * (not in the room, or the room is unknown). Other failures (homeserver
   * unreachable) throw, so the caller's event is retried.
   */
  state(asUser: MatrixUserId, roomId: RoomId): Promise<readonly RoomStateEvent[] | null>;
}
