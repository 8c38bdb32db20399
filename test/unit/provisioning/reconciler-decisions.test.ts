import { describe, expect, it } from "vitest";
import { backoffMs, desiredState } from "../../../src/provisioning/reconciler.ts";
import type { TenantToReconcile } from "../../../src/provisioning/state.ts";
import type { TenantId } from "../../../src/shared/ids.ts";

const NOW = new Date("2026-11-22T12:00:00Z");

function tenant(overrides: Partial<TenantToReconcile> = {}): TenantToReconcile {
  return {
    tenantId: "00000000-0000-0000-0000-000000000001" as TenantId,
    slug: "acme",
    plan: "free",
    deleteAfter: null,
    provisionedAt: null,
    provisionRequestedAt: null,
    holds: 0,
    provisioning: null,
    ...overrides,
  };
}

describe("desired state", () => {
  it("runs a tenant without holds", () => {
    expect(desiredState(tenant(), NOW)).toBe("running");
  });

  it("stops a tenant with any hold, including one scheduled for deletion within retention", () => {
    expect(desiredState(tenant({ holds: 1 }), NOW)).toBe("stopped");
    expect(desiredState(tenant({ holds: 1, deleteAfter: new Date(NOW.getTime() + 1) }), NOW)).toBe(
      "stopped",
    );
  });

  it("deletes once the retention period has passed", () => {
    expect(desiredState(tenant({ holds: 1, deleteAfter: NOW }), NOW)).toBe("deleted");
  });
});

describe("backoff", () => {
  it("doubles per consecutive failure up to the cap", () => {
    expect([1, 2, 3, 4, 5, 6].map((failures) => backoffMs(failures, 1_000, 10_000))).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000, 10_000,
    ]);
    expect(backoffMs(10_000, 1_000, 60_000)).toBe(60_000);
  });
});
