import type { FastifyInstance } from "fastify";
import type { Knex } from "knex";
import type { Conversations } from "../agents/conversation.ts";
import { agentRepository } from "../agents/repository.ts";
import type { Config } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { TenantRepository } from "../tenants/repository.ts";
import { EventPipeline } from "./event-pipeline.ts";
import { pruneInbox } from "./inbox.ts";
import { buildAppserviceHttp } from "./http.ts";
import type { RuntimeMetrics } from "./metrics.ts";
import type { RegistrationParameters } from "./registration.ts";
import { routeSdkLogging } from "./sdk-logging.ts";
import { TenantRegistry, type ServedTenant } from "./tenant-registry.ts";

const INBOX_PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** How soon the runtime notices a homeserver the provisioner moved (another process may have). */
const HOMESERVER_REFRESH_INTERVAL_MS = 10_000;

export interface RuntimeDependencies {
  readonly db: Knex;
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly tenants: TenantRepository;
  readonly conversations: Conversations;
  /** Created by the composition root so the agents can report into the same registry. */
  readonly metrics: RuntimeMetrics;
}

/** The appservice runtime: one HTTP listener, every tenant's transactions, their agents' answers. */
export class Runtime {
  readonly registry: TenantRegistry;
  readonly pipeline: EventPipeline;
  readonly metrics: RuntimeMetrics;
  readonly http: FastifyInstance;
  readonly #config: Readonly<Config>;
  readonly #log: Logger;
  readonly #db: Knex;
  #pruneTimer: NodeJS.Timeout | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;

  constructor(deps: RuntimeDependencies) {
    const { config, db } = deps;
    this.#config = config;
    this.#db = db;
    this.#log = deps.log.child({ module: "runtime" });
    routeSdkLogging(deps.log);
    this.metrics = deps.metrics;
    this.registry = new TenantRegistry(
      db,
      deps.tenants,
      registrationParameters(config),
      config.runtime.activitySaveDelayMs,
      this.#log,
    );
    this.pipeline = new EventPipeline({
      db,
      registry: this.registry,
      conversations: deps.conversations,
      metrics: this.metrics,
      log: this.#log,
      maxBodyChars: config.runtime.maxInputChars,
    });
    this.http = buildAppserviceHttp({
      registry: this.registry,
      pipeline: this.pipeline,
      metrics: this.metrics,
      log: deps.log,
      bodyLimitBytes: config.runtime.maxTransactionBytes,
      agentPrefix: config.runtime.agentPrefix,
      relayLocalpart: config.runtime.relayLocalpart,
      agentExists: async (served, name) =>
        (await withTenant(db, served.homeserver.tenantId, (trx) =>
          agentRepository.findByName(trx, name),
        )) !== undefined,
    });
  }

  /** Loads tenants, starts listening, and resumes events left pending by a previous run. */
  async start(): Promise<string> {
    await this.registry.loadAll();
    const url = await this.http.listen({
      host: this.#config.runtime.host,
      port: this.#config.runtime.port,
    });
    const resumed = await this.pipeline.recover();
    this.#log.info({ url, tenants: this.registry.size, resumed }, "appservice runtime listening");
    for (const served of this.registry.all()) void this.#announce(served);
    this.#pruneTimer = setInterval(() => void this.pruneInboxes(), INBOX_PRUNE_INTERVAL_MS);
    this.#pruneTimer.unref();
    this.#refreshTimer = setInterval(() => {
      this.registry.forgetChanged().catch((error: unknown) => {
        this.#log.warn({ err: error }, "could not check tenants' homeserver addresses");
      });
    }, HOMESERVER_REFRESH_INTERVAL_MS);
    this.#refreshTimer.unref();
    return url;
  }

  /**
   * Tells a homeserver we are back with the appservice ping (MSC2659): on
   * its success Synapse sends the transactions it held back while we were
   * down at once, instead of after its backoff, which doubles up to 8.5
   * minutes. Best effort and not awaited: a homeserver that is down, or too
   * old for the ping, retries on its own schedule.
   */
  async #announce(served: ServedTenant): Promise<void> {
    const { tenantId, registrationId } = served.homeserver;
    try {
      await served.appservice.botClient.doRequest(
        "POST",
        `/_matrix/client/v1/appservice/${encodeURIComponent(registrationId)}/ping`,
        null,
        {},
      );
    } catch (error) {
      this.#log.info({ err: describeError(error), tenantId }, "could not ping the homeserver");
    }
  }

  /** Deletes old handled events and transaction ids of every served tenant. */
  async pruneInboxes(): Promise<void> {
    for (const served of this.registry.all()) {
      const tenantId = served.homeserver.tenantId;
      try {
        const pruned = await pruneInbox(
          this.#db,
          tenantId,
          this.#config.runtime.inboxRetentionDays,
        );
        if (pruned.events + pruned.transactions > 0)
          this.#log.info({ tenantId, ...pruned }, "pruned the appservice inbox");
      } catch (error) {
        this.#log.warn({ err: error, tenantId }, "could not prune the appservice inbox");
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#pruneTimer);
    clearInterval(this.#refreshTimer);
    await this.http.close();
    await this.pipeline.stop();
  }
}

export function registrationParameters(config: Readonly<Config>): RegistrationParameters {
  return {
    runtimeUrl: config.runtime.publicUrl ?? `http://${config.runtime.host}:${config.runtime.port}`,
    agentPrefix: config.runtime.agentPrefix,
    botLocalpart: config.runtime.botLocalpart,
    relayLocalpart: config.runtime.relayLocalpart,
  };
}
