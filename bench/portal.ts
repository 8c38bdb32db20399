/**
 * Portal throughput and latency over real HTTP: the app from src/main.ts
 * with the portal listening on loopback, seeded with accounts, tenants,
 * agents and API tokens, then measured at 1, 10 and 100 concurrent
 * keep-alive clients (a closed loop in a worker thread, bench/http-load.ts):
 *
 * - login:       POST /api/v1/session (argon2id verification: CPU-bound by design)
 * - dashboard:   GET / with a session cookie
 * - agents-api:  GET /api/v1/tenants/:id/agents with a bearer API token
 * - agents-page: GET /t/:slug/agents with a session cookie
 *
 * PostgreSQL when DATABASE_URL is set (it must exist; the bench adds its own
 * uniquely named rows, so a scratch database is best), else PGlite in a
 * temporary directory. Rate limits are raised so they do not shape the figures.
 *
 *   node_modules/.bin/node bench/portal.ts [--clients 1,10,100] [--seconds 5]
 *     [--warmup 1] [--scenarios login,dashboard,agents-api,agents-page]
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { readOutbox } from "../src/accounts/mailer.ts";
import type { Actor } from "../src/audit/audit-log.ts";
import { parseConfig } from "../src/config/load.ts";
import { createApp, type App } from "../src/main.ts";
import { outboxDir } from "../src/portal/outbox.ts";
import { createLogger } from "../src/shared/logger.ts";
import { freePort } from "../test/support/synapse.ts";
import type { LoadClient, LoadJob, LoadResult } from "./http-load.ts";
import { writeLatest, type Figure } from "./results.ts";

const PASSWORD = "bench password, long enough";
const ACCOUNTS = 10;
const TENANTS_PER_ACCOUNT = 3;
const AGENTS_PER_TENANT = 20;
const SCENARIOS = ["login", "dashboard", "agents-api", "agents-page"] as const;
type Scenario = (typeof SCENARIOS)[number];

const { values: args } = parseArgs({
  options: {
    clients: { type: "string", default: "1,10,100" },
    seconds: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    scenarios: { type: "string", default: SCENARIOS.join(",") },
  },
});
const CLIENT_COUNTS = args.clients.split(",").map(Number);
const MEASURE_MS = Number(args.seconds) * 1000;
const WARMUP_MS = Number(args.warmup) * 1000;
const CHOSEN = args.scenarios.split(",") as Scenario[];
for (const name of CHOSEN)
  if (!SCENARIOS.includes(name))
    throw new Error(`unknown scenario ${name}: ${SCENARIOS.join(",")}`);
const MAX_CLIENTS = Math.max(...CLIENT_COUNTS);

function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** What one seeded account brings: its tenants, and a session per virtual client. */
interface SeededAccount {
  readonly email: string;
  readonly tenants: { readonly id: string; readonly slug: string; readonly token: string }[];
}

/** A browser as the bench plays it: its CSRF cookie and token, and a session once signed in. */
interface BenchBrowser {
  readonly account: SeededAccount;
  readonly browserCookie: string;
  readonly anonymousCsrf: string;
  readonly sessionCookie: string;
}

async function seed(app: App, run: string): Promise<SeededAccount[]> {
  const seeded: SeededAccount[] = [];
  for (let a = 0; a < ACCOUNTS; a += 1) {
    const email = `bench-${run}-${String(a)}@example.org`;
    await app.accounts.signup({ email, password: PASSWORD, displayName: `Bench ${String(a)}` });
    const mail = (await readOutbox(outboxDir(app.config), ACCOUNTS * 2)).find(
      (m) => m.to === email,
    );
    const token = /[?&]token=([^\s&]+)/.exec(mail?.text ?? "")?.[1];
    if (token === undefined) throw new Error(`no verification mail for ${email}`);
    const accountId = await app.accounts.verifyEmail(decodeURIComponent(token));
    const by: Actor = { id: accountId, via: "portal" };
    const tenants: SeededAccount["tenants"] = [];
    for (let t = 0; t < TENANTS_PER_ACCOUNT; t += 1) {
      const slug = `b${run}-${String(a)}-${String(t)}`;
      const { tenant } = await app.tenants.create({
        slug,
        name: `Bench ${String(a)}/${String(t)}`,
        serverName: `${slug}.bench.test`,
        homeserverUrl: "http://127.0.0.1:9",
      });
      await app.tenants.addMember(tenant.id, accountId, "owner");
      for (let g = 0; g < AGENTS_PER_TENANT; g += 1)
        await app.agents.create(tenant.id, { name: `agent${String(g)}` }, by);
      const { plaintext } = await app.apiTokens.create(tenant.id, { name: "bench" }, accountId, by);
      tenants.push({ id: tenant.id, slug, token: plaintext });
    }
    seeded.push({ email, tenants });
  }
  return seeded;
}

function cookieOf(response: Response, name: string): string {
  for (const header of response.headers.getSetCookie()) {
    const [pair] = header.split(";");
    if (pair?.startsWith(`${name}=`)) return pair;
  }
  throw new Error(`no ${name} cookie in the response`);
}

/** Signs one browser in over HTTP, as the JSON API documents: GET /api/v1/me for a CSRF token, then POST the session. */
async function signIn(base: string, account: SeededAccount): Promise<BenchBrowser> {
  const me = await fetch(`${base}/api/v1/me`);
  const browserCookie = cookieOf(me, "sb_csrf");
  const { csrfToken } = (await me.json()) as { csrfToken: string };
  const login = await fetch(`${base}/api/v1/session`, {
    method: "POST",
    headers: {
      cookie: browserCookie,
      "x-csrf-token": csrfToken,
      "content-type": "application/json",
    },
    body: JSON.stringify({ email: account.email, password: PASSWORD }),
  });
  if (login.status !== 200) throw new Error(`login failed: ${String(login.status)}`);
  return {
    account,
    browserCookie,
    anonymousCsrf: csrfToken,
    sessionCookie: cookieOf(login, "sb_session"),
  };
}

/** What every client of a scenario sends: client i is browser i, with its own account's session, tenant and token. */
function jobFor(
  scenario: Scenario,
  base: string,
  browsers: readonly BenchBrowser[],
  clients: number,
): Omit<LoadJob, "warmupMs" | "durationMs"> {
  const chosen = browsers.slice(0, clients);
  const tenantOf = (browser: BenchBrowser, index: number) => {
    const tenant = browser.account.tenants[index % TENANTS_PER_ACCOUNT];
    if (tenant === undefined) throw new Error("no tenant seeded");
    return tenant;
  };
  const signedIn = (browser: BenchBrowser) => ({
    cookie: `${browser.browserCookie}; ${browser.sessionCookie}`,
  });
  switch (scenario) {
    case "login":
      return {
        method: "POST",
        expectStatus: 200,
        clients: chosen.map((browser) => ({
          url: `${base}/api/v1/session`,
          headers: {
            cookie: browser.browserCookie,
            "x-csrf-token": browser.anonymousCsrf,
            "content-type": "application/json",
          },
          body: JSON.stringify({ email: browser.account.email, password: PASSWORD }),
        })),
      };
    case "dashboard":
      return {
        method: "GET",
        expectStatus: 200,
        clients: chosen.map((browser) => ({ url: `${base}/`, headers: signedIn(browser) })),
      };
    case "agents-api":
      return {
        method: "GET",
        expectStatus: 200,
        clients: chosen.map((browser, i) => {
          const tenant = tenantOf(browser, i);
          return {
            url: `${base}/api/v1/tenants/${tenant.id}/agents`,
            headers: { authorization: `Bearer ${tenant.token}` },
          };
        }),
      };
    case "agents-page":
      return {
        method: "GET",
        expectStatus: 200,
        clients: chosen.map((browser, i) => ({
          url: `${base}/t/${tenantOf(browser, i).slug}/agents`,
          headers: signedIn(browser),
        })),
      };
  }
}

function runInWorker(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./http-load.ts", import.meta.url), { workerData: job });
    worker.once("message", (result: LoadResult) => {
      resolve(result);
      void worker.terminate();
    });
    worker.once("error", reject);
  });
}

/** Busy CPU of the whole machine (from /proc/stat, USER_HZ = 100) and of this process, in ms. */
async function cpuSnapshot(): Promise<{ machineMs: number; processMs: number; wallMs: number }> {
  const [cpuLine] = (await readFile("/proc/stat", "utf8")).split("\n");
  const [, user, nice, system, , , irq, softirq, steal] = (cpuLine ?? "").trim().split(/\s+/);
  const jiffies = [user, nice, system, irq, softirq, steal].reduce((sum, v) => sum + Number(v), 0);
  const usage = process.cpuUsage();
  return {
    machineMs: jiffies * 10,
    processMs: (usage.user + usage.system) / 1000,
    wallMs: performance.now(),
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

const fixed = (value: number, digits = 1): string =>
  Number.isFinite(value) ? value.toFixed(digits) : "-";

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  const backend = databaseUrl === undefined ? "PGlite" : "PostgreSQL";
  const dataDir = await mkdtemp(join(tmpdir(), "switchboard-bench-portal-"));
  const port = await freePort();
  const config = parseConfig(
    JSON.stringify({
      dataDir,
      log: { level: process.env.BENCH_LOG_LEVEL ?? "error" },
      secrets: {
        masterKeys: { bench: randomBytes(32).toString("base64") },
        activeKeyId: "bench",
      },
      ...(databaseUrl === undefined ? {} : { database: { url: databaseUrl } }),
      portal: {
        host: "127.0.0.1",
        port,
        publicUrl: `http://127.0.0.1:${String(port)}`,
        baseDomain: "bench.test",
        // The limits' own bookkeeping still runs; only their ceilings are out of the way.
        authAttemptsPerMinute: 10_000,
        apiRequestsPerMinute: 1_000_000,
      },
    }),
    {},
    "bench config",
  );
  const app = await createApp(config, {
    log: createLogger({ level: config.log.level, pretty: false }),
  });
  try {
    const base = await app.portal.start();
    const run = randomBytes(3).toString("hex");
    progress(
      `bench: ${backend}, seeding ${String(ACCOUNTS)} accounts × ${String(TENANTS_PER_ACCOUNT)} tenants × ${String(AGENTS_PER_TENANT)} agents`,
    );
    const accounts = await seed(app, run);
    progress(`bench: signing in ${String(MAX_CLIENTS)} browsers`);
    const browsers: BenchBrowser[] = [];
    for (let i = 0; i < MAX_CLIENTS; i += 1)
      browsers.push(await signIn(base, accounts[i % ACCOUNTS] as SeededAccount));

    const rows: string[] = [];
    const figures: Figure[] = [];
    for (const scenario of CHOSEN) {
      const probe = jobFor(scenario, base, browsers, 1);
      const probeClient = probe.clients[0] as LoadClient;
      const answer = await fetch(probeClient.url, {
        method: probe.method,
        headers: probeClient.headers,
        ...(probeClient.body === undefined ? {} : { body: probeClient.body }),
      });
      await answer.arrayBuffer();
      if (answer.status !== probe.expectStatus) {
        progress(
          `bench: ${scenario}: ${probeClient.url} answers ${String(answer.status)}; skipped`,
        );
        rows.push(
          `| ${scenario} | - | not measured: HTTP ${String(answer.status)} | | | | | | | |`,
        );
        continue;
      }
      for (const clients of CLIENT_COUNTS) {
        progress(`bench: ${scenario} at ${String(clients)} clients`);
        const elu = performance.eventLoopUtilization();
        const before = await cpuSnapshot();
        const result = await runInWorker({
          ...jobFor(scenario, base, browsers, clients),
          warmupMs: WARMUP_MS,
          durationMs: MEASURE_MS,
        });
        // Includes the warm-up: how busy the server's event loop was while loaded.
        const busy = performance.eventLoopUtilization(elu).utilization;
        const after = await cpuSnapshot();
        const processMs = after.processMs - before.processMs;
        // Everything else on the machine: PostgreSQL's backends, and anyone else's work.
        const otherCores =
          (after.machineMs - before.machineMs - processMs) / (after.wallMs - before.wallMs);
        const sorted = [...result.latenciesMs].sort((x, y) => x - y);
        const perSecond = sorted.length / (result.measuredMs / 1000);
        rows.push(
          `| ${scenario} | ${String(clients)} | ${String(sorted.length)} | ${fixed(perSecond)} | ${fixed(percentile(sorted, 50), 2)} | ${fixed(percentile(sorted, 99), 2)} | ${String(result.errors)} | ${fixed(busy * 100, 0)}% | ${fixed(processMs / (sorted.length + result.errors + result.unmeasuredRequests), 2)} | ${fixed(otherCores, 2)} |`,
        );
        const key = `${backend === "PGlite" ? "pglite" : "postgres"}.${scenario}.clients=${String(clients)}`;
        figures.push(
          { key: `${key}.req_per_s`, value: perSecond, unit: "req/s", better: "higher" },
          { key: `${key}.p50`, value: percentile(sorted, 50), unit: "ms", better: "lower" },
          { key: `${key}.p99`, value: percentile(sorted, 99), unit: "ms", better: "lower" },
          { key: `${key}.errors`, value: result.errors, unit: "requests", better: "lower" },
        );
        if (result.firstError !== undefined)
          progress(`bench: ${scenario}: first error: ${result.firstError}`);
      }
    }

    const lines = [
      `### Portal on ${backend} (Node ${process.versions.node}, ${String(availableParallelism())} cores, ${String(MEASURE_MS / 1000)} s per point after ${String(WARMUP_MS / 1000)} s warm-up)`,
      "",
      "| scenario | clients | requests | req/s | p50 ms | p99 ms | errors | event loop busy | process CPU ms/req | other CPU (cores) |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
      ...rows,
      "",
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    progress(
      `bench: figures: ${writeLatest(
        "portal",
        figures.filter((figure) => Number.isFinite(figure.value)),
      )}`,
    );
  } finally {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
