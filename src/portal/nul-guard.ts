import { badRequest } from "../shared/errors.ts";
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
      const found = nulAt(value);
      if (found !== undefined) {
        done(badRequest(`${where}${found.slice(0, 200)}: must not contain NUL characters`));
        return;
      }
    }
    done();
  });
}

/** The path (".a.0") of a string or key holding a NUL, if any; walked without recursion (bodies may be deep). */
function nulAt(root: unknown): string | undefined {
  const pending: { value: unknown; path: string }[] = [{ value: root, path: "" }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, path } = next;
    if (typeof value === "string") {
      if (value.includes("\u0000")) return path;
    } else if (typeof value === "object" && value !== null && !Buffer.isBuffer(value)) {
      for (const [key, child] of Object.entries(value)) {
        // The key is quoted with its NUL removed so the message stays printable.
        if (key.includes("\u0000")) return `${path}.${key.replaceAll("\u0000", "")}`;
        pending.push({ value: child, path: `${path}.${key}` });
      }
    }
  }
  return undefined;
}
