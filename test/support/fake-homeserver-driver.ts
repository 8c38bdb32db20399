import type {
  HomeserverDriver,
  HomeserverEndpoint,
  HomeserverObservation,
  HomeserverSpec,
  HomeserverState,
} from "../../src/provisioning/driver.ts";
import { AppError } from "../../src/shared/errors.ts";
import type { TenantId } from "../../src/shared/ids.ts";

export type DriverCall =
  | { readonly method: "ensure"; readonly tenantId: TenantId; readonly spec: HomeserverSpec }
  | { readonly method: "stop" | "remove" | "inspect"; readonly tenantId: TenantId };

/**
 * A HomeserverDriver that records every call and plays states: ensure makes
 * a tenant "running" at http://127.0.0.1:<port>, stop makes it "stopped",
 * remove "absent". `failNext(method)` makes the next call of that method
 * throw an unavailable AppError; `kill(tenant)` plays a crashed homeserver.
 */
export class FakeHomeserverDriver implements HomeserverDriver {
  readonly name = "fake";
  readonly calls: DriverCall[] = [];
  readonly #states = new Map<TenantId, { state: HomeserverState; clientUrl: string }>();
  readonly #failures = new Map<string, number>();
  #nextPort = 28_100;

  failNext(method: "ensure" | "stop" | "remove" | "inspect", times = 1): void {
    this.#failures.set(method, (this.#failures.get(method) ?? 0) + times);
  }

  kill(tenantId: TenantId): void {
    const current = this.#states.get(tenantId);
    if (current !== undefined) this.#states.set(tenantId, { ...current, state: "stopped" });
  }

  stateOf(tenantId: TenantId): HomeserverState {
    return this.#states.get(tenantId)?.state ?? "absent";
  }

  callsOf(method: DriverCall["method"], tenantId?: TenantId): DriverCall[] {
    return this.calls.filter(
      (call) => call.method === method && (tenantId === undefined || call.tenantId === tenantId),
    );
  }

  #maybeFail(method: string): void {
    const left = this.#failures.get(method) ?? 0;
    if (left === 0) return;
    this.#failures.set(method, left - 1);
    throw new AppError("unavailable", `fake driver: ${method} failed on purpose`);
  }

  ensure(spec: HomeserverSpec): Promise<HomeserverEndpoint> {
    this.calls.push({ method: "ensure", tenantId: spec.tenantId, spec });
    this.#maybeFail("ensure");
    const clientUrl =
      this.#states.get(spec.tenantId)?.clientUrl ?? `http://127.0.0.1:${this.#nextPort++}`;
    this.#states.set(spec.tenantId, { state: "running", clientUrl });
    return Promise.resolve({ clientUrl });
  }

  stop(tenantId: TenantId): Promise<void> {
    this.calls.push({ method: "stop", tenantId });
    this.#maybeFail("stop");
    const current = this.#states.get(tenantId);
    if (current !== undefined) this.#states.set(tenantId, { ...current, state: "stopped" });
    return Promise.resolve();
  }

  remove(tenantId: TenantId): Promise<void> {
    this.calls.push({ method: "remove", tenantId });
    this.#maybeFail("remove");
    this.#states.delete(tenantId);
    return Promise.resolve();
  }

  inspect(tenantId: TenantId): Promise<HomeserverObservation> {
    this.calls.push({ method: "inspect", tenantId });
    this.#maybeFail("inspect");
    const current = this.#states.get(tenantId);
    return Promise.resolve(
      current === undefined
        ? { state: "absent" }
        : { state: current.state, clientUrl: current.clientUrl },
    );
  }

  listTenants(): Promise<TenantId[]> {
    return Promise.resolve([...this.#states.keys()]);
  }
}
