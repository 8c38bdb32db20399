import { AppError } from "../shared/errors.ts";
import type { TenantHomeserver } from "../tenants/types.ts";

/**
 * Plain client-server calls with a tenant's appservice token, for processes
 * without a matrix-bot-sdk Appservice of their own (the portal: avatar
 * uploads in media.ts, invites in room-invites.ts). Callers masquerade with
 * `user_id=` in the path.
 */

/** A homeserver that takes longer than this for one small call is not answering. */
const REQUEST_TIMEOUT_MS = 15_000;

export interface MatrixErrorBody {
  readonly errcode?: string;
  readonly error?: string;
}

/**
 * Sends `init` to `path` on the tenant's homeserver with its as_token.
 * An unreachable or silent homeserver is `upstream_failed` with a message
 * for people; any HTTP answer is returned for the caller to read.
 */
export async function appserviceRequest(
  fetchImpl: typeof fetch,
  homeserver: TenantHomeserver,
  path: string,
  init: RequestInit,
): Promise<Response> {
  try {
    return await fetchImpl(`${homeserver.clientUrl}${path}`, {
      ...init,
      headers: {
        ...(init.headers as Record<string, string>),
        authorization: `Bearer ${homeserver.asToken}`,
      },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new AppError(
      "upstream_failed",
      `the tenant's homeserver (${homeserver.serverName}) could not be reached; try again in a moment`,
      { cause: error },
    );
  }
}

/** The Matrix error body of a response ({} when it has none). */
export async function matrixErrorOf(response: Response): Promise<MatrixErrorBody> {
  return (await response.json().catch(() => ({}))) as MatrixErrorBody;
}
