import { Conversations } from "./agents/conversation.ts";
import { RoomSizes } from "./agents/room-sizes.ts";
import { RelayAccount } from "./bridges/relay-account.ts";
import { BotCommands } from "./commands/bot.ts";
import { buildCommands } from "./commands/registry.ts";
import { testModelKey } from "./models/key-test.ts";
import { usageSummary } from "./tenants/usage.ts";
import { MemberService } from "./tenants/members.ts";
import { TenantOnboarding } from "./tenants/onboarding.ts";
import { AgentAvatars } from "./agents/avatar.ts";
import { AgentService } from "./agents/service.ts";
import type { Agent } from "./agents/types.ts";
import type { Config } from "./config/schema.ts";
import { connectDatabase, type Database } from "./db/connect.ts";
import { migrateToLatest } from "./db/migrate.ts";
import { markdownToHtml } from "./matrix/formatting.ts";
import { MatrixMedia } from "./matrix/media.ts";
import { MatrixRoomInvites } from "./matrix/room-invites.ts";
import { BridgeService } from "./bridges/service.ts";
import { createRuntimeMetrics, observeTurns } from "./matrix/metrics.ts";
import { MemoryService } from "./memory/service.ts";
import { buildRegistration, registrationToYaml } from "./matrix/registration.ts";
import { Runtime, registrationParameters } from "./matrix/runtime.ts";
import { createModelProvider } from "./models/provider.ts";
import type { ModelCredentials, ModelProvider } from "./models/types.ts";
import type { SecretCipher } from "./secrets/cipher.ts";
import { loadCipher } from "./secrets/master-keys.ts";
import { createLogger, type Logger } from "./shared/logger.ts";
import { ProviderKeys } from "./tenants/provider-keys.ts";
import { TenantRepository } from "./tenants/repository.ts";
import { TenantService } from "./tenants/service.ts";
import type { TenantHomeserver } from "./tenants/types.ts";
import { join } from "node:path";
import { createMailer } from "./accounts/mailer.ts";
import { AccountService } from "./accounts/service.ts";
import { SessionStore } from "./portal/auth/sessions.ts";
import { outboxDir } from "./portal/outbox.ts";
import { Portal } from "./portal/portal.ts";
import { ApiTokens } from "./tenants/api-tokens.ts";
import { HomeserverAdmins } from "./tenants/homeserver-admin.ts";
import { createBilling } from "./billing/create.ts";
import type { Billing } from "./billing/service.ts";
import { Entitlements } from "./tenants/entitlements.ts";
import { PlanChanges } from "./tenants/plan-changes.ts";
import type { TenantBackups } from "./provisioning/backups.ts";
import { createTenantBackups } from "./provisioning/create-backups.ts";

/** A key test is one tiny call; it should not keep an admin waiting long. */
const KEY_TEST_TIMEOUT_MS = 15_000;

/** Seams for tests and benchmarks; production passes none. */
export interface AppOverrides {
  readonly log?: Logger;
  readonly database?: Database;
  readonly createProvider?: (agent: Agent, credentials: ModelCredentials) => ModelProvider;
}

/** Everything a Switchboard process is made of, wired once. */
export interface App {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly database: Database;
  readonly cipher: SecretCipher;
  readonly tenants: TenantService;
  readonly tenantRepository: TenantRepository;
  readonly agents: AgentService;
  readonly providerKeys: ProviderKeys;
  readonly memory: MemoryService;
  readonly runtime: Runtime;
  readonly accounts: AccountService;
  readonly apiTokens: ApiTokens;
  /** What each tenant's plan allows; asked by every surface. */
  readonly entitlements: Entitlements;
  /** Moving tenants between plans (operators; billing). */
  readonly planChanges: PlanChanges;
  /** The web portal and JSON API (built on first use; `start()` listens). */
  readonly portal: Portal;
  /** Plans and Stripe billing; its timers run with the portal. */
  readonly billing: Billing;
  /** Per-tenant backups (on demand here; the provisioner runs the schedule). */
  readonly backups: TenantBackups;
  /** Tenants' Slack, Discord and Telegram bridges (portal, API and chat). */
  readonly bridges: BridgeService;
  /** The appservice registration YAML for a tenant's homeserver. */
  registrationYaml(homeserver: TenantHomeserver): string;
  close(): Promise<void>;
}

/**
 * The composition root: config in, a wired application out. Opens (and
 * migrates) the database but starts no listener; callers start what they
 * run (`runtime.start()`), so tests boot exactly this.
 */
export async function createApp(
  config: Readonly<Config>,
  overrides: AppOverrides = {},
): Promise<App> {
  const log = overrides.log ?? createLogger({ level: config.log.level, pretty: config.log.pretty });
  const database =
    overrides.database ??
    (await connectDatabase({
      url: config.database.url,
      pgliteDir: config.database.pgliteDir ?? join(config.dataDir, "pglite"),
      poolMax: config.database.poolMax,
    }));
  await migrateToLatest(database.knex);
  // PGlite has no autovacuum: without fresh statistics, memory retrieval
  // cannot tell common words from rare ones (see memory/retrieval.ts).
  if (database.kind === "pglite") await database.knex.raw("analyze");
  const cipher = await loadCipher(config, log);
  const db = database.knex;
  const tenantRepository = new TenantRepository(cipher);
  const createProvider =
    overrides.createProvider ??
    ((agent: Agent, credentials: ModelCredentials) =>
      createModelProvider(agent.provider, credentials, {
        timeoutMs: config.models.timeoutMs,
        maxRetries: config.models.maxRetries,
      }));
  const portalUrl = (
    config.portal.publicUrl ?? `http://${config.portal.host}:${String(config.portal.port)}`
  ).replace(/\/+$/, "");
  const entitlements = new Entitlements(db, config.plans, config.defaultPlan);
  const agents = new AgentService(db, config.models, entitlements);
  const providerKeys = new ProviderKeys(db, cipher);
  const memory = new MemoryService(db);
  const bridges = new BridgeService({
    db,
    cipher,
    entitlements,
    tenants: tenantRepository,
    invites: new MatrixRoomInvites(),
    agentPrefix: config.runtime.agentPrefix,
    relayLocalpart: config.runtime.relayLocalpart,
    log,
  });
  const commands = buildCommands({
    agents,
    keys: providerKeys,
    memory,
    usage: (tenantId) => usageSummary(db, tenantId),
    testKey: (provider, apiKey, model) =>
      testModelKey(
        createModelProvider(
          provider,
          { apiKey, baseUrl: config.models[provider].baseUrl },
          { timeoutMs: KEY_TEST_TIMEOUT_MS, maxRetries: 0 },
        ),
        model,
      ),
    hasManagedKey: (provider) => config.models[provider].apiKey !== undefined,
    defaultModel: (provider) => config.models[provider].defaultModel,
    agentPrefix: config.runtime.agentPrefix,
    bridges,
    portalUrl,
  });
  const roomSizes = new RoomSizes();
  const bot = new BotCommands({ db, commands, render: markdownToHtml, log, roomSizes });
  const metrics = createRuntimeMetrics();
  const conversations = new Conversations(
    {
      db,
      cipher,
      models: config.models,
      editThrottleMs: config.runtime.editThrottleMs,
      extractFacts: config.memory.extractFacts,
      createProvider,
      render: markdownToHtml,
      log,
      observe: observeTurns(metrics),
      entitlements,
      portalUrl,
    },
    config.runtime.agentPrefix,
    roomSizes,
    bot,
    new RelayAccount({ db, log }),
  );
  const runtime = new Runtime({
    db,
    config,
    log,
    tenants: tenantRepository,
    conversations,
    metrics,
  });
  const tenants = new TenantService(db, tenantRepository, config.defaultPlan);
  const mailer = createMailer({
    smtpUrl: config.portal.mail.smtpUrl,
    from: config.portal.mail.from,
    outboxDir: outboxDir(config),
    log,
  });
  const accounts = new AccountService(db, mailer, { publicUrl: portalUrl, log });
  const apiTokens = new ApiTokens(db);
  const planChanges = new PlanChanges({
    db,
    plans: config.plans,
    mailer,
    publicUrl: portalUrl,
    log,
  });
  const billing = createBilling({ config, db, log, mailer, publicUrl: portalUrl, planChanges });
  const backups = createTenantBackups(config, db, log);
  const portal = new Portal({
    config,
    log,
    db,
    cipher,
    mailer,
    accounts,
    sessions: new SessionStore(db, config.portal.sessionIdleDays),
    apiTokens,
    tenants,
    tenantRepository,
    onboarding: new TenantOnboarding(db, tenants, tenantRepository, config),
    members: new MemberService(db, mailer, tenantRepository, { publicUrl: portalUrl, log }),
    agents,
    providerKeys,
    memory,
    avatars: new AgentAvatars({
      db,
      agents,
      tenants: tenantRepository,
      media: new MatrixMedia(),
      agentPrefix: config.runtime.agentPrefix,
      maxBytes: config.portal.maxAvatarBytes,
      log,
    }),
    billing,
    backups,
    homeserverAdmins: new HomeserverAdmins(db, cipher),
    bridges,
    metricsRegistries: [metrics.registry],
    publicUrl: portalUrl,
  });
  return {
    config,
    log,
    database,
    cipher,
    tenants,
    tenantRepository,
    agents,
    providerKeys,
    memory,
    runtime,
    accounts,
    apiTokens,
    portal,
    billing,
    backups,
    bridges,
    entitlements,
    planChanges,
    registrationYaml: (homeserver) =>
      registrationToYaml(buildRegistration(homeserver, registrationParameters(config))),
    close: async () => {
      await portal.stop();
      await runtime.stop();
      if (overrides.database === undefined) await database.close();
    },
  };
}
