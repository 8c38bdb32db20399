import type { AgentMedia, AvatarType } from "../agents/avatar.ts";
import { AppError } from "../shared/errors.ts";
import { localpartOf, type MatrixUserId } from "../shared/ids.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import { appserviceRequest, matrixErrorOf, type MatrixErrorBody } from "./appservice-client.ts";

const EXTENSIONS: Record<AvatarType, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/gif": "gif",
  "image/webp": "webp",
};

/**
 * AgentMedia over the client-server API with the tenant's appservice token
 * (`user_id=` masquerades as the agent). Plain fetch: the portal has no
 * matrix-bot-sdk Appservice of its own, and these are three simple calls.
 */
export class MatrixMedia implements AgentMedia {
  readonly #fetch: typeof fetch;

  constructor(fetchImpl: typeof fetch = fetch) {
    this.#fetch = fetchImpl;
  }

  async upload(
    homeserver: TenantHomeserver,
    user: MatrixUserId,
    image: { readonly bytes: Uint8Array; readonly contentType: AvatarType },
  ): Promise<string> {
    await this.#ensureRegistered(homeserver, user);
    const fileName = `avatar.${EXTENSIONS[image.contentType]}`;
    const response = await this.#request(
      homeserver,
      `/_matrix/media/v3/upload?user_id=${encodeURIComponent(user)}&filename=${fileName}`,
      { method: "POST", headers: { "content-type": image.contentType }, body: image.bytes },
    );
    const body = (await response.json().catch(() => ({}))) as MatrixErrorBody & {
      content_uri?: unknown;
    };
    if (!response.ok || typeof body.content_uri !== "string")
      throw await refused(response, "the homeserver refused the upload", body);
    return body.content_uri;
  }

  async setAvatar(homeserver: TenantHomeserver, user: MatrixUserId, mxcUrl: string): Promise<void> {
    const response = await this.#request(
      homeserver,
      `/_matrix/client/v3/profile/${encodeURIComponent(user)}/avatar_url?user_id=${encodeURIComponent(user)}`,
      {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ avatar_url: mxcUrl }),
      },
    );
    if (!response.ok) throw await refused(response, "the homeserver refused the profile change");
  }

  /** Appservice users exist only once registered; an existing one answers M_USER_IN_USE. */
  async #ensureRegistered(homeserver: TenantHomeserver, user: MatrixUserId): Promise<void> {
    const response = await this.#request(homeserver, "/_matrix/client/v3/register", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "m.login.application_service", username: localpartOf(user) }),
    });
    if (response.ok) return;
    const body = await matrixErrorOf(response);
    if (body.errcode === "M_USER_IN_USE") return;
    throw await refused(response, "the homeserver refused to register the agent", body);
  }

  #request(homeserver: TenantHomeserver, path: string, init: RequestInit): Promise<Response> {
    return appserviceRequest(this.#fetch, homeserver, path, init);
  }
}

async function refused(
  response: Response,
  what: string,
  parsed?: MatrixErrorBody,
): Promise<AppError> {
  const body = parsed ?? (await matrixErrorOf(response));
  const reason = body.errcode === undefined ? `HTTP ${String(response.status)}` : body.errcode;
  return new AppError("upstream_failed", `${what} (${reason})`);
}
