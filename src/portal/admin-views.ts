import { z } from "zod";
import {
  HttpHomeserverHealth,
  type HomeserverHealth,
  type HomeserverHealthStatus,
} from "../tenants/homeserver-health.ts";
import { TenantOperations, type TenantOverview } from "../tenants/operations.ts";
import { PlanChanges } from "../tenants/plan-changes.ts";
import type { FastifyReply, FastifyRequest } from "fastify";
import { isAppError } from "../shared/errors.ts";
import { requireOperator } from "./access.ts";
import type { PortalDeps } from "./types.ts";

/** What the admin pages and API work with; one set per portal so the health cache is shared. */
export interface AdminServices {
  readonly operations: TenantOperations;
  readonly health: HomeserverHealth;
}

const servicesByDeps = new WeakMap<PortalDeps, AdminServices>();

/** The admin area's services for a portal, made on first use. */
export function adminServices(deps: PortalDeps): AdminServices {
  let services = servicesByDeps.get(deps);
  if (services === undefined) {
    services = {
      operations: new TenantOperations(
        deps.db,
        deps.config.plans,
        new PlanChanges({
          db: deps.db,
          plans: deps.config.plans,
          mailer: deps.mailer,
          publicUrl: deps.publicUrl,
          log: deps.log,
        }),
      ),
      health: new HttpHomeserverHealth(),
    };
    servicesByDeps.set(deps, services);
  }
  return services;
}

/**
 * An onRequest hook for every admin route, before CSRF and validation: a
 * signed-in non-operator (or an API token) gets exactly the answer of a URL
 * that does not exist, so the admin area cannot be discovered; an anonymous
 * request is asked to sign in.
 */
export async function operatorsOnly(
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  try {
    requireOperator(request);
    return undefined;
  } catch (error) {
    if (isAppError(error) && error.code === "unauthorized") throw error;
    reply.callNotFound();
    return reply;
  }
}

export const HealthView = z.object({
  state: z.enum(["up", "down"]),
  detail: z.string().nullable(),
  checkedAt: z.string().describe("ISO 8601; answers are cached about 30 s"),
});

export const AdminTenantView = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  plan: z.string(),
  status: z.enum(["provisioning", "active", "suspended"]),
  createdAt: z.string(),
  deleteAfter: z.string().nullable(),
  provisionRequestedAt: z.string(),
  members: z.number().int(),
  agents: z.number().int(),
  messagesToday: z.number().int(),
  homeserver: z
    .object({ serverName: z.string(), clientUrl: z.string(), health: HealthView })
    .nullable(),
});
export type AdminTenantView = z.infer<typeof AdminTenantView>;

function healthView(status: HomeserverHealthStatus): z.infer<typeof HealthView> {
  return { state: status.state, detail: status.detail, checkedAt: status.checkedAt.toISOString() };
}

/**
 * Overviews with their homeservers' health, checked concurrently (and never
 * inside a transaction: the overviews are already read).
 */
export async function withHealth(
  health: HomeserverHealth,
  overviews: readonly TenantOverview[],
): Promise<AdminTenantView[]> {
  return Promise.all(
    overviews.map(async (overview) => ({
      id: overview.id,
      slug: overview.slug,
      name: overview.name,
      plan: overview.plan,
      status: overview.status,
      createdAt: overview.createdAt.toISOString(),
      deleteAfter: overview.deleteAfter?.toISOString() ?? null,
      provisionRequestedAt: overview.provisionRequestedAt.toISOString(),
      members: overview.members,
      agents: overview.agents,
      messagesToday: overview.messagesToday,
      homeserver:
        overview.homeserver === null
          ? null
          : {
              ...overview.homeserver,
              health: healthView(await health.check(overview.homeserver.clientUrl)),
            },
    })),
  );
}
