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
  readonly turns: Counter;
  readonly turnSeconds: Histogram;
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
    turns: metrics.addCounter({
      name: "switchboard_turns_total",
      help: "Agent turns by provider and outcome (failure: the model failure kind)",
      labels: ["provider", "outcome", "failure"],
    }),
    turnSeconds: metrics.addTimer({
      name: "switchboard_model_turn_seconds",
      help: "From the model request to the end of the answer",
      labels: ["provider", "outcome"],
    }),
    activeUsers: metrics.addGauge({
      name: "switchboard_active_users",
      help: "People active with a tenant's agents (matrix-appservice-bridge activity rules)",
      labels: ["tenant"],
    }),
  };
}

/** Records turn outcomes (the agents' TurnObserver) in the metrics. */
export function observeTurns(
  metrics: RuntimeMetrics,
): (outcome: { provider: string; outcome: string; failure?: string; seconds: number }) => void {
  return ({ provider, outcome, failure, seconds }) => {
    metrics.turns.inc({ provider, outcome, failure: failure ?? "" });
    if (seconds > 0) metrics.turnSeconds.observe({ provider, outcome }, seconds);
  };
}
