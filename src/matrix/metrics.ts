import { PrometheusMetrics } from "matrix-appservice-bridge";
import { Registry, type Counter, type Gauge, type Histogram } from "prom-client";

/** The runtime's Prometheus metrics, on a registry of its own (several runtimes can share a process in tests). */
export interface RuntimeMetrics {
  readonly registry: Registry;
  readonly transactions: Counter;
  readonly events: Counter;
  readonly handled: Counter;
  readonly handleSeconds: Histogram;
  readonly activeUsers: Gauge;
}

export function createRuntimeMetrics(): RuntimeMetrics {
  const registry = new Registry();
  const metrics = new PrometheusMetrics(registry);
  return {
    registry,
    transactions: metrics.addCounter({
      name: "switchboard_appservice_transactions_total",
      help: "Appservice transactions received",
      labels: ["outcome"],
    }),
    events: metrics.addCounter({
      name: "switchboard_appservice_events_total",
      help: "Room events accepted into the inbox",
    }),
    handled: metrics.addCounter({
      name: "switchboard_events_handled_total",
      help: "Inbox events handled",
      labels: ["outcome"],
    }),
    handleSeconds: metrics.addTimer({
      name: "switchboard_event_handle_seconds",
      help: "Time to handle one inbox event (including model calls)",
    }),
    activeUsers: metrics.addGauge({
      name: "switchboard_active_users",
      help: "People active with a tenant's agents (matrix-appservice-bridge activity rules)",
      labels: ["tenant"],
    }),
  };
}
