import { fileURLToPath } from "node:url";
import type { FastifyReply, FastifyRequest } from "fastify";
import { Eta } from "eta";
import type { PortalApp } from "./types.ts";

/** portal/templates: the server-rendered pages (Eta, escaped by default). */
export const TEMPLATES_DIR = fileURLToPath(new URL("../../portal/templates", import.meta.url));
export const STATIC_DIR = fileURLToPath(new URL("../../portal/static", import.meta.url));

const FLASH_COOKIE = "sb_flash";
const MAX_FLASH_CHARS = 300;

declare module "fastify" {
  interface FastifyReply {
    /**
     * Renders portal/templates/<name>.eta inside the layout. Every template
     * gets `it.account`, `it.csrf` (the form token), `it.path` and `it.flash`
     * besides its own data.
     */
    page(name: string, data?: Record<string, unknown>, status?: number): Promise<FastifyReply>;
    /** Redirects (303, so a POST becomes a GET) with a one-time message for the next page. */
    redirectWithFlash(url: string, message: string): FastifyReply;
  }
}

export function registerViews(app: PortalApp): void {
  const eta = new Eta({ views: TEMPLATES_DIR, cache: true, autoEscape: true });

  app.decorateReply(
    "page",
    async function (
      this: FastifyReply,
      name: string,
      data: Record<string, unknown> = {},
      status = 200,
    ) {
      const request: FastifyRequest = this.request;
      const flash = request.cookies[FLASH_COOKIE];
      if (flash !== undefined) void this.clearCookie(FLASH_COOKIE, { path: "/" });
      const principal = request.principal;
      const html = await eta.renderAsync(name, {
        account: principal?.kind === "account" ? principal.account : null,
        csrf: request.csrfToken(),
        path: request.url,
        flash: flash?.slice(0, MAX_FLASH_CHARS) ?? null,
        pastDue: request.pastDueBanner,
        ...data,
      });
      return this.code(status).type("text/html; charset=utf-8").send(html);
    },
  );

  app.decorateReply(
    "redirectWithFlash",
    function (this: FastifyReply, url: string, message: string) {
      void this.setCookie(FLASH_COOKIE, message.slice(0, MAX_FLASH_CHARS), {
        path: "/",
        httpOnly: true,
        sameSite: "lax",
        maxAge: 60,
      });
      return this.redirect(url, 303);
    },
  );
}
