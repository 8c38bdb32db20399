import { summariseOpenApi } from "./openapi-summary.ts";
import type { PortalApp } from "./types.ts";

/** The OpenAPI document and a readable page made from it, on the server (no scripts, no CDN). */
export function apiDocs(app: PortalApp): void {
  app.get("/api/v1/openapi.json", { schema: { hide: true } }, () => Promise.resolve(app.swagger()));
  app.get("/api/v1/docs", { schema: { hide: true } }, async (_request, reply) =>
    reply.page("docs", {
      title: "API",
      groups: summariseOpenApi(app.swagger()),
    }),
  );
}
