import cookie from "@fastify/cookie";
import formbody from "@fastify/formbody";
import helmet from "@fastify/helmet";
import multipart from "@fastify/multipart";
import rateLimit from "@fastify/rate-limit";
import fastifyStatic from "@fastify/static";
import swagger from "@fastify/swagger";
import Fastify, { LogController, type FastifyBaseLogger } from "fastify";
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { requestRateLimit } from "./api/rate-limits.ts";
import { registerTenantGate } from "./access.ts";
import { registerAuth } from "./auth/plugin.ts";
import { registerErrorHandling } from "./errors.ts";
import { registerTextGuard } from "./text-guard.ts";
import { registerRoutes } from "./routes.ts";
import type { PortalApp, PortalDeps } from "./types.ts";
import { STATIC_DIR, registerViews } from "./views.ts";

/** Forms and JSON bodies; uploads have their own limit (portal.maxAvatarBytes). */
const BODY_LIMIT_BYTES = 256 * 1024;
const MULTIPART_MAX_FIELDS = 20;

/**
 * The portal: server-rendered pages and the JSON API (/api/v1, OpenAPI at
 * /api/v1/openapi.json) over the same services. Built, not started: tests
 * call `inject`, the Portal lifecycle calls `listen`.
 */
export async function buildPortal(deps: PortalDeps): Promise<PortalApp> {
  const app = Fastify({
    loggerInstance: deps.log.child({ module: "portal" }) as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: deps.config.portal.trustProxy,
    forceCloseConnections: true,
    // Request URLs can carry one-time tokens (verification, reset links): no per-request logs.
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", "data:"],
        // Upgrade and "Manage billing" forms answer with a redirect to Stripe, which form-action also governs.
        formAction: ["'self'", ...deps.billing.redirectOrigins],
        frameAncestors: ["'none'"],
        // Plain-HTTP self-hosting and the embedded mode must keep working.
        upgradeInsecureRequests: deps.publicUrl.startsWith("https:") ? [] : null,
      },
    },
    strictTransportSecurity: deps.publicUrl.startsWith("https:"),
  });
  await app.register(cookie);
  await app.register(formbody, { bodyLimit: BODY_LIMIT_BYTES });
  await app.register(multipart, {
    limits: {
      fileSize: deps.config.portal.maxAvatarBytes,
      files: 1,
      fields: MULTIPART_MAX_FIELDS,
    },
  });
  // Every route is limited per caller; login, sign-up and reset set stricter limits of their own.
  await app.register(rateLimit, { global: true, ...requestRateLimit(deps) });
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Switchboard API",
        version: "1",
        description:
          "Everything the portal does. Authenticate with a tenant API token (`Authorization: Bearer sbt_…`) or a session cookie plus the X-CSRF-Token header.",
      },
      components: {
        securitySchemes: {
          token: { type: "http", scheme: "bearer" },
          session: { type: "apiKey", in: "cookie", name: "sb_session" },
        },
      },
      security: [{ token: [] }, { session: [] }],
    },
    // Only the JSON API is documented; pages are for people.
    transform: (input) => {
      const transformed = jsonSchemaTransform(input);
      return input.url.startsWith("/api/v1/")
        ? transformed
        : { ...transformed, schema: { ...transformed.schema, hide: true } };
    },
  });
  await app.register(fastifyStatic, {
    root: STATIC_DIR,
    prefix: "/static/",
    maxAge: "1h",
  });

  registerViews(app);
  registerAuth(app, deps);
  registerTextGuard(app);
  registerTenantGate(app, deps);
  registerErrorHandling(app);
  registerRoutes(app, deps);
  return app;
}
