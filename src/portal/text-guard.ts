import { badRequest } from "../shared/errors.ts";
import { nulPath } from "../shared/nul.ts";
import type { PortalApp } from "./types.ts";

/**
 * PostgreSQL text cannot hold U+0000: a NUL anywhere in a request's path,
 * query or body would reach the database as an encoding error (a 500). Every
 * request is checked once, before the tenant gate looks a slug up, and one
 * carrying a NUL is refused with a 400 naming where it was.
 */
export function registerNulGuard(app: PortalApp): void {
  app.addHook("preValidation", (request, _reply, done) => {
    for (const [where, value] of [
      ["path", request.params],
      ["query", request.query],
      ["body", request.body],
    ] as const) {
      const found = nulPath(value);
      if (found !== undefined) {
        done(badRequest(`${where}${found.slice(0, 200)}: must not contain NUL characters`));
        return;
      }
    }
    done();
  });
}
