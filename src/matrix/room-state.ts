import type { Appservice } from "matrix-bot-sdk";
import type { RoomStateEvent, RoomStateReader } from "../bridges/room-state.ts";
import type { MatrixUserId, RoomId } from "../shared/ids.ts";
import { retryRateLimited } from "./gateway.ts";

/** Errors meaning "you may not see this room", not "try again". */
const NOT_VISIBLE_ERRCODES = new Set(["M_FORBIDDEN", "M_NOT_FOUND"]);

/** RoomStateReader through the tenant's matrix-bot-sdk Appservice (intents masquerade with user_id). */
export class MatrixRoomState implements RoomStateReader {
  readonly #appservice: Appservice;

  constructor(appservice: Appservice) {
    this.#appservice = appservice;
  }

  async state(asUser: MatrixUserId, roomId: RoomId): Promise<readonly RoomStateEvent[] | null> {
    const client = this.#appservice.getIntentForUserId(asUser).underlyingClient;
    try {
      return (await retryRateLimited(() => client.getRoomState(roomId))) as RoomStateEvent[];
    } catch (error) {
      const errcode = (error as { errcode?: string }).errcode;
      if (errcode !== undefined && NOT_VISIBLE_ERRCODES.has(errcode)) return null;
      throw error;
    }
  }
}
