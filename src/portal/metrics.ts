import { Counter, Histogram, Registry, type Metric } from "prom-client";
import type { PortalApp, PortalDeps } from "./types.ts";

/** Seconds; from a fast page to a slow model-key test. */
const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const UNMATCHED_ROUTE = "unmatched";

export interface PortalMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"method" | "route" | "status_class">;
  readonly seconds: Histogram<"method" | "route" | "status_class">;
}

/** The portal's own metrics, on a registry of its own (no default process metrics: the runtime's registry has them). */
export function createPortalMetrics(): PortalMetrics {
  const registry = new Registry();
  const labelNames = ["method", "route", "status_class"] as const;
  return {
    registry,
    requests: new Counter({
      name: "switchboard_portal_requests_total",
      help: "Portal HTTP requests by method, route pattern and status class",
      labelNames,
      registers: [registry],
    }),
    seconds: new Histogram({
      name: "switchboard_portal_request_seconds",
      help: "Portal HTTP request latency by method, route pattern and status class",
      labelNames,
      buckets: LATENCY_BUCKETS_S,
      registers: [registry],
    }),
  };
}

/**
 * One registry with every metric of the given registries; a name already
 * taken is skipped (several registries may carry the same default process
 * metrics), where Registry.merge would throw.
 */
export function mergeRegistries(registries: readonly Registry[]): Registry {
  const merged = new Registry();
  const seen = new Set<string>();
  for (const registry of registries) {
    for (const metric of registry.getMetricsAsArray() as unknown as Metric[]) {
      const name = (metric as unknown as { name: string }).name;
      if (seen.has(name)) continue;
      seen.add(name);
      merged.registerMetric(metric);
    }
  }
  return merged;
}

/**
 * Request metrics for every route (labelled by the route's pattern, never
 * the raw URL: ids would explode the label set and leak into dashboards) and
 * GET /metrics with them plus deps.metricsRegistries (the runtime's).
 */
export function portalMetrics(app: PortalApp, deps: PortalDeps): void {
  const metrics = createPortalMetrics();
  app.addHook("onResponse", async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? UNMATCHED_ROUTE,
      status_class: `${String(Math.floor(reply.statusCode / 100))}xx`,
    };
    metrics.requests.inc(labels);
    metrics.seconds.observe(labels, reply.elapsedTime / 1000);
  });
  app.get("/metrics", { config: { rateLimit: false } }, async (_request, reply) => {
    const registry = mergeRegistries([metrics.registry, ...deps.metricsRegistries]);
    return reply.type(registry.contentType).send(await registry.metrics());
  });
}
