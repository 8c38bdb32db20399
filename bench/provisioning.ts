/**
 * Time to a working homeserver: tenants created through the portal API, one
 * after another, brought up by the reconciler with the local driver on real
 * Synapse (start, /health, appservice ping, bootstrap admin, management room,
 * demo agent). Prints each tenant's seconds from creation to `active`, and
 * the product's target (under 60 s) beside them.
 *
 *   node_modules/.bin/node bench/provisioning.ts [--tenants 3]
 */
import { performance } from "node:perf_hooks";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { createProvisioner } from "../src/provisioning/provisioner.ts";
import type { TenantId } from "../src/shared/ids.ts";
import { signUpAndIn } from "../test/support/portal.ts";
import { startStack } from "../test/support/stack.ts";
import { freePort } from "../test/support/synapse.ts";
import { writeLatest, type Figure } from "./results.ts";

const TARGET_SECONDS = 60;
const POLL_MS = 100;
const GIVE_UP_MS = 300_000;

const { values } = parseArgs({ options: { tenants: { type: "string", default: "3" } } });
const tenantCount = Number(values.tenants);

const portRangeStart = await freePort();
const stack = await startStack({
  database: "postgres",
  config: {
    log: { level: "error" },
    provisioning: {
      reconcileIntervalMs: 5_000,
      demandPollMs: 100,
      local: { portRangeStart, portRangeEnd: Math.min(65_535, portRangeStart + 100) },
    },
  },
});
const provisioner = await createProvisioner(stack.app);
provisioner.start();
const portal = await stack.app.portal.app();
const owner = await signUpAndIn(portal, stack.outboxDir, "bench@provisioning.test");

const rows: string[] = [];
const figures: Figure[] = [];
try {
  for (let index = 0; index < tenantCount; index++) {
    const slug = `bench${String(index)}`;
    const started = performance.now();
    const response = await owner.request("/api/v1/tenants", { json: { name: slug, slug } });
    if (response.statusCode !== 201) throw new Error(`creating ${slug}: ${response.body}`);
    const tenantId = (response.json() as { id: string }).id as TenantId;
    for (;;) {
      const tenant = await stack.app.tenantRepository.findById(stack.database.knex, tenantId);
      if (tenant?.status === "active") break;
      if (performance.now() - started > GIVE_UP_MS) throw new Error(`${slug} never became active`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const seconds = (performance.now() - started) / 1000;
    const steps = (await stack.database
      .knex("provisioning_steps")
      .where({ tenant_id: tenantId, status: "done" })
      .select("step", "started_at", "finished_at")) as {
      step: string;
      started_at: Date;
      finished_at: Date;
    }[];
    const stepTimes = steps
      .map(
        (step) =>
          `${step.step} ${((new Date(step.finished_at).getTime() - new Date(step.started_at).getTime()) / 1000).toFixed(1)}`,
      )
      .join(", ");
    figures.push({
      key: `tenant${String(index)}.to_active`,
      value: seconds,
      unit: "s",
      better: "lower",
    });
    rows.push(
      `| ${slug} | ${seconds.toFixed(1)} | ${seconds < TARGET_SECONDS ? "yes" : "no"} | ${stepTimes} |`,
    );
  }
} finally {
  await provisioner.stop();
  await stack.stop();
}

process.stdout.write(
  [
    `### Provisioning with the local driver (Node ${process.version}, ${String(cpus().length)} cores, PostgreSQL, Synapse SQLite)`,
    "",
    "| tenant | seconds to active | under 60 s | steps (s) |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n"),
);
process.stderr.write(`figures: ${writeLatest("provisioning", figures)}\n`);
