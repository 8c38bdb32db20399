import type { Knex } from "knex";
import type { Actor } from "../audit/audit-log.ts";
import { AppError, badRequest } from "../shared/errors.ts";
import type { MatrixUserId, TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import { agentUserId } from "./identity.ts";
import type { AgentService } from "./service.ts";
import type { Agent } from "./types.ts";

/** The image types an avatar may be; every Matrix client shows these. */
export const AVATAR_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"] as const;
export type AvatarType = (typeof AVATAR_TYPES)[number];

/**
 * The image type the bytes really are, by their magic numbers; null for
 * anything else. A claimed content type or file name is never trusted: a
 * "PNG" that is HTML or SVG would be served from the homeserver as such.
 */
export function imageTypeOf(bytes: Uint8Array): AvatarType | null {
  const starts = (signature: readonly number[], offset = 0): boolean =>
    bytes.length >= offset + signature.length &&
    signature.every((byte, index) => bytes[offset + index] === byte);
  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (starts([0xff, 0xd8, 0xff])) return "image/jpeg";
  if (starts([0x47, 0x49, 0x46, 0x38, 0x37, 0x61]) || starts([0x47, 0x49, 0x46, 0x38, 0x39, 0x61]))
    return "image/gif";
  // RIFF....WEBP
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return "image/webp";
  return null;
}

/**
 * A homeserver's media repository and profiles, as an appservice user
 * (implemented by src/matrix/media.ts). Never called inside a database
 * transaction.
 */
export interface AgentMedia {
  /**
   * Uploads `bytes` as `user` (registering the user first if needed) and
   * resolves to the mxc:// URL. Throws AppError `upstream_failed` when the
   * homeserver cannot be reached or refuses; nothing is stored then.
   */
  upload(
    homeserver: TenantHomeserver,
    user: MatrixUserId,
    image: { readonly bytes: Uint8Array; readonly contentType: AvatarType },
  ): Promise<string>;
  /** Sets `user`'s profile avatar to an mxc:// URL. Same errors as upload. */
  setAvatar(homeserver: TenantHomeserver, user: MatrixUserId, mxcUrl: string): Promise<void>;
}

export interface AgentAvatarsDeps {
  readonly db: Knex;
  readonly agents: AgentService;
  readonly tenants: TenantRepository;
  readonly media: AgentMedia;
  readonly agentPrefix: string;
  readonly maxBytes: number;
  readonly log: Logger;
}

/**
 * Setting an agent's avatar from an uploaded image: checked (size, real
 * type), stored in the tenant's homeserver media repository as the agent,
 * then recorded through AgentService.update (same rules and audit entry as
 * `agent set <name> avatar mxc://…`), then shown on the agent's profile.
 */
export class AgentAvatars {
  readonly #deps: AgentAvatarsDeps;
  readonly #log: Logger;

  constructor(deps: AgentAvatarsDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "avatars" });
  }

  async set(tenantId: TenantId, name: string, bytes: Uint8Array, by: Actor): Promise<Agent> {
    const { maxBytes } = this.#deps;
    if (bytes.length === 0) throw badRequest("avatar: choose an image file");
    if (bytes.length > maxBytes)
      throw badRequest(
        `avatar: the image is larger than ${String(Math.floor(maxBytes / 1024))} KB`,
      );
    const contentType = imageTypeOf(bytes);
    if (contentType === null) throw badRequest("avatar: must be a PNG, JPEG, GIF or WebP image");
    // Unknown agents are refused before anything goes to the homeserver.
    const agent = await this.#deps.agents.get(tenantId, name);
    const homeserver = await this.#deps.tenants.findHomeserver(this.#deps.db, tenantId);
    if (homeserver === undefined)
      throw new AppError("unavailable", "this tenant's homeserver is not set up yet");
    const userId = agentUserId(this.#deps.agentPrefix, agent.name, homeserver.serverName);
    const mxcUrl = await this.#deps.media.upload(homeserver, userId, { bytes, contentType });
    const updated = await this.#deps.agents.update(tenantId, name, { avatarUrl: mxcUrl }, by);
    // The setting is saved; should the profile update fail, the runtime
    // applies it before the agent's next answer (ensureProfile).
    await this.#deps.media.setAvatar(homeserver, userId, mxcUrl).catch((error: unknown) => {
      this.#log.warn(
        { err: error, tenantId, agent: name },
        "setting the avatar on the profile failed",
      );
    });
    return updated;
  }
}
