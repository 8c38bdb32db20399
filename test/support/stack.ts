import type { Agent } from "../../src/agents/types.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { connectDatabase, type DatabaseKind } from "../../src/db/connect.ts";
import { createApp, type App } from "../../src/main.ts";
import { outboxDir } from "../../src/portal/outbox.ts";
import { createLogger } from "../../src/shared/logger.ts";
import type { Tenant } from "../../src/tenants/types.ts";
import { createTestDatabase, type TestDatabase } from "./database.ts";
import { startFakeOpenAI, type FakeModelServer } from "./fake-models.ts";
import { MatrixTestUser } from "./matrix-user.ts";
import { deepMerge } from "./portal.ts";
import { freePort, startTestHomeserver, type TestHomeserver } from "./synapse.ts";

export const TEST_MODEL_KEY = "sk-test-managed-key";

/** One tenant with its own real homeserver. */
export interface StackTenant {
  readonly tenant: Tenant;
  readonly homeserver: TestHomeserver;
  readonly serverName: string;
  /** A human with an account on the tenant's homeserver. */
  user(localpart: string): Promise<MatrixTestUser>;
  createAgent(input: Record<string, unknown> & { name: string }): Promise<Agent>;
  agentUserId(name: string): string;
}

export interface TestStack {
  readonly app: App;
  /** The configuration the app was built from (a child runtime can be given the same). */
  readonly config: Readonly<Config>;
  readonly database: TestDatabase;
  readonly model: FakeModelServer;
  readonly runtimeUrl: string;
  /** With `portal: true`, where the portal listens (also its publicUrl). */
  readonly portalUrl: string | undefined;
  /** Where the app's mail goes (no SMTP in tests). */
  readonly outboxDir: string;
  addTenant(
    slug: string,
    options?: {
      serverName?: string;
      /** More registrations for the tenant's homeserver (stand-in bridges), by file name. */
      appserviceRegistrations?: Readonly<Record<string, string>>;
    },
  ): Promise<StackTenant>;
  /** Stops the runtime (as a crash would, without draining) and starts a fresh one on the same database. */
  restartRuntime(options?: { graceful?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  readonly database?: DatabaseKind;
  readonly editThrottleMs?: number;
  readonly extractFacts?: boolean;
  /** Receives every log line at debug level (for tests that inspect logs). */
  readonly logSink?: NodeJS.WritableStream;
  /**
   * The plan new tenants start on; "enterprise" (unlimited) unless a test is
   * about plan limits, so that other tests are not cut short by them.
   */
  readonly defaultPlan?: string;
  /** Deep-merged over the stack's config (e.g. plans and billing for a billing journey). */
  readonly config?: Record<string, unknown>;
  /** Start the portal listening on a free loopback port (webhooks, mail links), billing timers with it. */
  readonly portal?: boolean;
  /**
   * PostgreSQL only: the app connects through the URL this returns (e.g. a
   * proxy a test can cut) instead of the test database's own; `database`
   * stays a direct connection for the test's checks.
   */
  readonly appDatabaseUrl?: (directUrl: string) => string;
}

/**
 * The whole service for an end-to-end test: a real database, the app from
 * the composition root, the runtime listening, a fake OpenAI-compatible model
 * server, and real Synapse homeservers added per tenant.
 */
export async function startStack(options: StackOptions = {}): Promise<TestStack> {
  const database = await createTestDatabase(options.database ?? "postgres");
  const model = await startFakeOpenAI({ apiKeys: [TEST_MODEL_KEY] });
  const runtimePort = await freePort();
  const portalPort = options.portal === true ? await freePort() : undefined;
  const listening =
    portalPort === undefined
      ? {}
      : {
          portal: {
            host: "127.0.0.1",
            port: portalPort,
            publicUrl: `http://127.0.0.1:${String(portalPort)}`,
          },
        };
  const config = parseConfig(
    JSON.stringify(
      deepMerge(
        {
          dataDir: `/tmp/switchboard-test-${runtimePort}`,
          log: { level: process.env.TEST_LOG_LEVEL ?? "warn" },
          runtime: {
            port: runtimePort,
            editThrottleMs: options.editThrottleMs ?? 300,
            activitySaveDelayMs: 50,
          },
          memory: { extractFacts: options.extractFacts ?? false },
          defaultPlan: options.defaultPlan ?? "enterprise",
          secrets: {
            masterKeys: { test: Buffer.alloc(32, 7).toString("base64") },
            activeKeyId: "test",
          },
          models: {
            openai: { baseUrl: model.url, apiKey: TEST_MODEL_KEY, defaultModel: "test-model" },
            maxRetries: 0,
            timeoutMs: 10_000,
          },
        },
        deepMerge(listening, options.config ?? {}),
      ),
    ),
    {},
    "test config",
  );
  const log =
    options.logSink === undefined
      ? createLogger({ level: config.log.level, pretty: false })
      : createLogger({ level: "debug", pretty: false, destination: options.logSink });
  const appDatabase =
    options.appDatabaseUrl === undefined || database.url === undefined
      ? database
      : await connectDatabase({ url: options.appDatabaseUrl(database.url), poolMax: 5 });
  let app = await createApp(config, { database: appDatabase, log });
  const runtimeUrl = await app.runtime.start();
  // The portal stays with the app that started it (a runtime restart makes a new app).
  const portalApp = app;
  const portalUrl = portalPort === undefined ? undefined : await portalApp.portal.start();
  const homeservers: TestHomeserver[] = [];

  const stack: TestStack = {
    get app() {
      return app;
    },
    config,
    database,
    model,
    runtimeUrl,
    portalUrl,
    outboxDir: outboxDir(config),
    async addTenant(slug, tenantOptions = {}) {
      const serverName = tenantOptions.serverName ?? `${slug}-${runtimePort}.test`;
      const created = await app.tenants.create({
        slug,
        name: slug,
        serverName,
        homeserverUrl: "http://127.0.0.1:9",
      });
      const homeserver = await startTestHomeserver({
        serverName,
        appserviceRegistrations: {
          ...tenantOptions.appserviceRegistrations,
          "switchboard.yaml": app.registrationYaml(created.homeserver),
        },
      });
      homeservers.push(homeserver);
      await app.tenantRepository.updateHomeserverUrl(
        database.knex,
        created.tenant.id,
        homeserver.clientUrl,
      );
      app.runtime.registry.forget(created.tenant.id);
      return {
        tenant: created.tenant,
        homeserver,
        serverName,
        async user(localpart) {
          const session = await homeserver.registerUser(localpart);
          return new MatrixTestUser(homeserver.clientUrl, session.userId, session.accessToken);
        },
        createAgent: (input) =>
          app.agents.create(created.tenant.id, input, { id: "test", via: "cli" }),
        agentUserId: (name) => `@${config.runtime.agentPrefix}${name}:${serverName}`,
      };
    },
    async restartRuntime(restartOptions = {}) {
      if (restartOptions.graceful === true) await app.runtime.stop();
      else await app.runtime.http.close();
      app = await createApp(config, { database: appDatabase, log });
      await app.runtime.start();
    },
    async stop() {
      if (portalUrl !== undefined) await portalApp.portal.stop().catch(() => undefined);
      await app.runtime.stop().catch(() => undefined);
      await Promise.all(homeservers.map((homeserver) => homeserver.stop()));
      await model.close();
      if (appDatabase !== database) await appDatabase.close();
      await database.drop();
    },
  };
  return stack;
}
