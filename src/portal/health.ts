import { constants } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import type { Knex } from "knex";
import { MIGRATIONS } from "../db/migrations/index.ts";
import { outboxDir } from "./outbox.ts";
import type { PortalApp, PortalDeps } from "./types.ts";

/** A readiness probe must answer before the orchestrator's own timeout. */
export const READY_CHECK_TIMEOUT_MS = 2_000;

/** "ok", or why not; never a raw error message (it may name hosts or users). */
export type CheckResult = "ok" | `failed: ${string}`;

export interface Readiness {
  readonly ready: boolean;
  readonly checks: Readonly<Record<"database" | "migrations" | "mail", CheckResult>>;
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error("timeout"));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

/** The migrations this code knows that the database has not run (knex's own bookkeeping table). */
async function pendingMigrations(db: Knex): Promise<string[]> {
  const rows = (await db("knex_migrations").select("name")) as { name: string }[];
  const applied = new Set(rows.map((row) => row.name));
  return MIGRATIONS.map((migration) => migration.name).filter((name) => !applied.has(name));
}

/**
 * Whether this portal can serve: the database answers, its schema is the
 * one this code expects, and mail can go out (SMTP configured, or the
 * outbox directory writable). Each check says what failed.
 */
export async function checkReadiness(deps: PortalDeps): Promise<Readiness> {
  const log = deps.log.child({ module: "readiness" });
  let database: CheckResult = "ok";
  let migrations: CheckResult = "ok";
  try {
    await withTimeout(deps.db.raw("select 1"), READY_CHECK_TIMEOUT_MS);
    const pending = await withTimeout(pendingMigrations(deps.db), READY_CHECK_TIMEOUT_MS);
    if (pending.length > 0)
      migrations = `failed: ${String(pending.length)} pending (${pending.join(", ")})`;
  } catch (error) {
    log.warn({ err: error }, "readiness: database check failed");
    database = "failed: the database does not answer";
    migrations = "failed: not checked without a database";
  }
  let mail: CheckResult = "ok";
  if (deps.config.portal.mail.smtpUrl === undefined) {
    const dir = outboxDir(deps.config);
    try {
      await mkdir(dir, { recursive: true });
      await access(dir, constants.W_OK);
    } catch (error) {
      log.warn({ err: error, dir }, "readiness: outbox not writable");
      mail = "failed: no SMTP server configured and the outbox directory is not writable";
    }
  }
  return {
    ready: database === "ok" && migrations === "ok" && mail === "ok",
    checks: { database, migrations, mail },
  };
}

/** /healthz (the process is alive; touches nothing) and /readyz (it can serve). */
export function healthRoutes(app: PortalApp, deps: PortalDeps): void {
  // Probes come often and from one address: they are not rate limited, and
  // they never look up a session (a cookie must not make them need the database).
  const probe = { config: { rateLimit: false, principal: false } } as const;
  app.get("/healthz", probe, async (_request, reply) =>
    reply.header("cache-control", "no-store").send({ status: "ok" }),
  );
  app.get("/readyz", probe, async (_request, reply) => {
    const readiness = await checkReadiness(deps);
    return reply
      .code(readiness.ready ? 200 : 503)
      .header("cache-control", "no-store")
      .send({ status: readiness.ready ? "ready" : "unavailable", checks: readiness.checks });
  });
}
