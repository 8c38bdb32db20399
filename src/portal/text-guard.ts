import { badRequest } from "../shared/errors.ts";
import { unstorableText } from "../shared/storable-text.ts";
import type { PortalApp } from "./types.ts";

/**
 * Text PostgreSQL cannot store (a NUL, an unpaired surrogate) anywhere in a
 * request's path, query or body would reach the database as an error (a
 * 500). Every request is checked once, before the tenant gate looks a slug
 * up, and one carrying such text is refused with a 400 naming where it was.
 */
export function registerTextGuard(app: PortalApp): void {
  app.addHook("preValidation", (request, _reply, done) => {
    for (const [where, value] of [
      ["path", request.params],
      ["query", request.query],
      ["body", request.body],
    ] as const) {
      const found = unstorableText(value);
      if (found !== undefined) {
        done(badRequest(`${where}${found.path.slice(0, 200)}: ${found.problem}`));
        return;
      }
    }
    done();
  });
}
