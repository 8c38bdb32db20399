/**
 * Density: the memory of one runtime process serving 0, 1, 100 and 1,000
 * tenants, each with idle agents. Tenants are registered in a fresh
 * PostgreSQL database (their homeservers are not running: an idle tenant
 * costs the runtime only what it holds for it). For each point a fresh
 * runtime process (bench/density-runtime.ts, node --expose-gc) starts on that
 * database, which loads every tenant; then each tenant's homeserver is played
 * by one appservice transaction with that tenant's hs_token (one room event
 * the runtime stores, handles and marks done), and the process reports its
 * memory after full garbage collections.
 *
 *   node_modules/.bin/node bench/density.ts [--tenants 0,1,100,1000] [--agents 2]
 */
import { fork, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseConfig } from "../src/config/load.ts";
import { createApp } from "../src/main.ts";
import { createLogger } from "../src/shared/logger.ts";
import type { TenantId } from "../src/shared/ids.ts";
import { createTestDatabase } from "../test/support/database.ts";
import { freePort } from "../test/support/synapse.ts";
import type { DensityMeasurement } from "./density-runtime.ts";
import { describeMachine, writeLatest, type Figure } from "./results.ts";

const CONCURRENT_REQUESTS = 8;
const POLL_MS = 100;
const MB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    tenants: { type: "string", default: "0,1,100,1000" },
    agents: { type: "string", default: "2" },
  },
});
const points = values.tenants
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const agentsPerTenant = Number(values.agents);
if (points.some((n) => !Number.isInteger(n) || n < 0) || !Number.isInteger(agentsPerTenant))
  throw new Error("--tenants takes counts like 0,1,100,1000 and --agents a count");

const database = await createTestDatabase("postgres");
const runtimePort = await freePort();
const configText = JSON.stringify({
  dataDir: `/tmp/switchboard-density-${String(runtimePort)}`,
  log: { level: "error" },
  database: { url: database.url },
  runtime: { port: runtimePort },
  defaultPlan: "enterprise",
  secrets: {
    masterKeys: { bench: Buffer.alloc(32, 9).toString("base64") },
    activeKeyId: "bench",
  },
  models: {
    // Never called: the agents stay idle.
    openai: { baseUrl: "http://127.0.0.1:9/v1", apiKey: "sk-unused", defaultModel: "idle" },
  },
});
const config = parseConfig(configText, {}, "density config");
// The seeding side: the same services, in this process, never started.
const seeder = await createApp(config, {
  database,
  log: createLogger({ level: "error", pretty: false }),
});

interface SeededTenant {
  readonly id: TenantId;
  readonly serverName: string;
  readonly hsToken: string;
}
const tenants: SeededTenant[] = [];

async function seedUpTo(count: number): Promise<void> {
  while (tenants.length < count) {
    const slug = `density${String(tenants.length)}`;
    const serverName = `${slug}.bench.test`;
    const created = await seeder.tenants.create({
      slug,
      name: slug,
      serverName,
      // Not running: nothing in this bench makes the runtime call it.
      homeserverUrl: `http://127.0.0.1:9/${slug}`,
    });
    for (let agent = 0; agent < agentsPerTenant; agent++)
      await seeder.agents.create(
        created.tenant.id,
        { name: `agent${String(agent)}` },
        { id: "bench", via: "cli" },
      );
    tenants.push({ id: created.tenant.id, serverName, hsToken: created.homeserver.hsToken });
  }
}

function request(child: ChildProcess, message: string): Promise<DensityMeasurement> {
  const answer = once(child, "message") as Promise<[DensityMeasurement]>;
  child.send(message);
  return answer.then(([measurement]) => measurement);
}

/** What a tenant's homeserver would send first: a transaction with one room event. */
async function sendTransaction(runtimeUrl: string, tenant: SeededTenant): Promise<void> {
  const txnId = randomUUID();
  const response = await fetch(
    `${runtimeUrl}/tenants/${tenant.id}/_matrix/app/v1/transactions/${txnId}`,
    {
      method: "PUT",
      headers: { authorization: `Bearer ${tenant.hsToken}`, "content-type": "application/json" },
      body: JSON.stringify({
        events: [
          {
            type: "m.room.topic",
            state_key: "",
            event_id: `$${txnId}`,
            room_id: `!lobby:${tenant.serverName}`,
            sender: `@alice:${tenant.serverName}`,
            origin_server_ts: Date.now(),
            content: { topic: "idle" },
          },
        ],
      }),
    },
  );
  if (response.status !== 200)
    throw new Error(
      `transaction for ${tenant.id}: ${String(response.status)} ${await response.text()}`,
    );
}

async function untilInboxHandled(): Promise<void> {
  for (;;) {
    const [row] = (await database
      .knex("inbound_events")
      .where({ status: "pending" })
      .count({ pending: "*" })) as { pending: string | number }[];
    if (Number(row?.pending ?? 0) === 0) return;
    await sleep(POLL_MS);
  }
}

interface Point {
  readonly tenants: number;
  readonly atStart: DensityMeasurement;
  readonly afterTraffic: DensityMeasurement;
}

async function measure(count: number): Promise<Point> {
  await seedUpTo(count);
  const child = fork(fileURLToPath(new URL("density-runtime.ts", import.meta.url)), [], {
    execArgv: ["--expose-gc"],
    env: { ...process.env, SWITCHBOARD_BENCH_CONFIG: configText },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  try {
    const [ready] = (await once(child, "message")) as [{ kind: string; url: string }];
    if (ready.kind !== "ready") throw new Error(`runtime said ${JSON.stringify(ready)}`);
    const atStart = await request(child, "measure");
    const queue = tenants.slice(0, count);
    await Promise.all(
      Array.from({ length: CONCURRENT_REQUESTS }, async () => {
        for (let tenant = queue.shift(); tenant !== undefined; tenant = queue.shift())
          await sendTransaction(ready.url, tenant);
      }),
    );
    await untilInboxHandled();
    const afterTraffic = await request(child, "measure");
    process.stderr.write(
      `${String(count)} tenants: rss ${(afterTraffic.rss / MB).toFixed(1)} MB, heap ${(afterTraffic.heapUsed / MB).toFixed(1)} MB\n`,
    );
    return { tenants: count, atStart, afterTraffic };
  } finally {
    child.send("stop");
    await once(child, "exit");
  }
}

const results: Point[] = [];
try {
  for (const count of points) results.push(await measure(count));
} finally {
  await seeder.database.close();
  await database.drop();
}

const base = results[0] as Point;
const perTenant = (point: Point, field: "rss" | "heapUsed"): string =>
  point.tenants === base.tenants
    ? "–"
    : (
        (point.afterTraffic[field] - base.afterTraffic[field]) /
        (point.tenants - base.tenants) /
        1024
      ).toFixed(1);
const mb = (bytes: number): string => (bytes / MB).toFixed(1);

process.stdout.write(
  [
    `### Density: one runtime process, ${String(agentsPerTenant)} idle agents per tenant`,
    "",
    `${describeMachine()}, ${new Date().toISOString()}. Memory after full GCs; per tenant = change over the ${String(base.tenants)}-tenant point.`,
    "",
    "| tenants | served | RSS at start MB | RSS MB | heap total MB | heap used MB | external MB | RSS KB/tenant | heap KB/tenant |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...results.map(
      (point) =>
        `| ${String(point.tenants)} | ${String(point.afterTraffic.servedTenants)} | ${mb(point.atStart.rss)} | ${mb(point.afterTraffic.rss)} | ${mb(point.afterTraffic.heapTotal)} | ${mb(point.afterTraffic.heapUsed)} | ${mb(point.afterTraffic.external)} | ${perTenant(point, "rss")} | ${perTenant(point, "heapUsed")} |`,
    ),
    "",
  ].join("\n"),
);

const figures: Figure[] = results.flatMap((point) => [
  {
    key: `tenants=${String(point.tenants)}.rss`,
    value: point.afterTraffic.rss / MB,
    unit: "MB",
    better: "lower",
  } as const,
  {
    key: `tenants=${String(point.tenants)}.heap_used`,
    value: point.afterTraffic.heapUsed / MB,
    unit: "MB",
    better: "lower",
  } as const,
]);
const last = results.at(-1) as Point;
if (last.tenants > base.tenants) {
  const span = last.tenants - base.tenants;
  figures.push(
    {
      key: "per_tenant.rss",
      value: (last.afterTraffic.rss - base.afterTraffic.rss) / span / 1024,
      unit: "KB",
      better: "lower",
    },
    {
      key: "per_tenant.heap_used",
      value: (last.afterTraffic.heapUsed - base.afterTraffic.heapUsed) / span / 1024,
      unit: "KB",
      better: "lower",
    },
  );
}
process.stderr.write(`figures: ${writeLatest("density", figures)}\n`);
