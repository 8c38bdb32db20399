import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // e2e files each start their own Synapse; two cores cannot run many at once.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Real servers and real homeservers: no retries that could hide a flake.
    retry: 0,
    // The JSON report lets .ci/run print the plain "N passed, N failed" summary line.
    reporters: [
      "default",
      ["json", { outputFile: "node_modules/.cache/switchboard/test-results.json" }],
    ],
  },
});
