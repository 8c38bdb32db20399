import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";

/**
 * CSRF tokens bound to the browser and the session: the token is an HMAC of
 * the browser's random `sb_csrf` cookie and the session id, under a key
 * derived from the master key. A page can only get one by reading our HTML
 * (same origin), a token from another browser or another session never
 * verifies, and nothing is stored.
 */
export class CsrfTokens {
  // A KeyObject, not the Buffer: HMAC setup with a raw key costs several times more per token.
  readonly #key: KeyObject;

  constructor(key: Buffer) {
    this.#key = createSecretKey(key);
  }

  issue(browserId: string, sessionIdSha256: string | null): string {
    return createHmac("sha256", this.#key)
      .update(`${browserId}.${sessionIdSha256 ?? "-"}`)
      .digest("base64url");
  }

  verify(presented: unknown, browserId: string, sessionIdSha256: string | null): boolean {
    if (typeof presented !== "string" || presented.length === 0 || presented.length > 128)
      return false;
    const expected = Buffer.from(this.issue(browserId, sessionIdSha256));
    const actual = Buffer.from(presented);
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }
}
