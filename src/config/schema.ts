import { z } from "zod";
import { NETWORKS } from "../bridges/networks.ts";
import { DEFAULT_PLANS, PlanSchema } from "./plans.ts";

/**
 * The whole configuration of a Switchboard process. One schema, parsed once at
 * start (see load.ts) and frozen. Every field has a default that suits the
 * embedded mode (`npm start` with no config file). Unknown keys are errors so
 * that a typo never silently falls back to a default.
 */

const port = z.number().int().min(1).max(65535);
const logLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
const httpUrl = z.url({ protocol: /^https?$/ });
/** Base64 of exactly 32 bytes (an AES-256 key). */
const masterKey = z
  .string()
  .refine(
    (value) => Buffer.from(value, "base64").length === 32,
    "must be 32 bytes, base64-encoded",
  );
const keyId = z.string().regex(/^[a-zA-Z0-9_-]{1,32}$/, "must be 1-32 letters, digits, _ or -");

export const ModelProviderName = z.enum(["openai", "anthropic"]);
export type ModelProviderName = z.infer<typeof ModelProviderName>;

export const ConfigSchema = z
  .strictObject({
    /** Where the embedded mode keeps PGlite, homeserver data, the generated master key and demo.json. */
    dataDir: z.string().min(1).default("data"),
    log: z
      .strictObject({
        level: logLevel.default("info"),
        pretty: z.boolean().default(false),
      })
      .prefault({}),
    database: z
      .strictObject({
        /** PostgreSQL connection string; when absent, embedded PGlite is used. */
        url: z
          .string()
          .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
          .optional(),
        /** PGlite data directory; defaults to <dataDir>/pglite. */
        pgliteDir: z.string().min(1).optional(),
        poolMax: z.number().int().min(1).max(200).default(10),
      })
      .prefault({}),
    secrets: z
      .strictObject({
        /**
         * Master keys for encrypting secrets at rest, by key id. The active key
         * encrypts; every listed key decrypts (rotation). When empty, the
         * embedded mode generates one in <dataDir>/master-keys.json.
         */
        masterKeys: z.record(keyId, masterKey).default({}),
        activeKeyId: keyId.optional(),
      })
      // Caught here so that `config check` finds it, not the first start.
      .refine(
        (secrets) =>
          secrets.activeKeyId === undefined ||
          Object.hasOwn(secrets.masterKeys, secrets.activeKeyId),
        { message: "must name one of secrets.masterKeys", path: ["activeKeyId"] },
      )
      .prefault({}),
    runtime: z
      .strictObject({
        /** Where the appservice HTTP listener binds. */
        host: z.string().min(1).default("127.0.0.1"),
        port: port.default(9000),
        /** The base URL homeservers use to reach the runtime; defaults to http://host:port. */
        publicUrl: httpUrl.optional(),
        /** Agents appear as @<agentPrefix><name>:<server>. */
        agentPrefix: z
          .string()
          .regex(/^[a-z0-9._=-]{1,16}$/, "must be 1-16 lowercase Matrix localpart characters")
          .default("ai_"),
        /** Localpart of the service's bot user (the appservice sender). */
        botLocalpart: z
          .string()
          .regex(/^[a-z0-9._=-]{1,64}$/, "must be a lowercase Matrix localpart")
          .default("switchboard"),
        /**
         * Localpart of the service's relay account on every tenant homeserver:
         * logged in to each bridge as the tenant's Slack app / Discord bot /
         * Telegram bot, it relays the agents' messages (src/bridges).
         */
        relayLocalpart: z
          .string()
          .regex(/^[a-z0-9._=-]{1,64}$/, "must be a lowercase Matrix localpart")
          .default("switchboard-relay"),
        /** Minimum gap between streamed edits of one answer. */
        editThrottleMs: z.number().int().min(100).max(10_000).default(700),
        /** Incoming message bodies longer than this are cut before they reach a model. */
        maxInputChars: z.number().int().min(100).max(200_000).default(16_000),
        /** How long activity updates are gathered before they are saved (matrix-appservice-bridge debounce). */
        activitySaveDelayMs: z.number().int().min(10).max(3_600_000).default(60_000),
        /** Handled events and transaction ids are deleted after this many days. */
        inboxRetentionDays: z.number().int().min(1).max(365).default(7),
        /** Largest appservice transaction body accepted. */
        maxTransactionBytes: z
          .number()
          .int()
          .min(65_536)
          .default(32 * 1024 * 1024),
      })
      .prefault({}),
    models: z
      .strictObject({
        defaultProvider: ModelProviderName.optional(),
        timeoutMs: z.number().int().min(1000).max(600_000).default(60_000),
        maxRetries: z.number().int().min(0).max(5).default(2),
        openai: z
          .strictObject({
            baseUrl: httpUrl.default("https://api.openai.com/v1"),
            /** The operator's managed key. */
            apiKey: z.string().min(1).optional(),
            defaultModel: z.string().min(1).default("gpt-4o-mini"),
          })
          .prefault({}),
        anthropic: z
          .strictObject({
            baseUrl: httpUrl.optional(),
            apiKey: z.string().min(1).optional(),
            defaultModel: z.string().min(1).default("claude-sonnet-4-5"),
          })
          .prefault({}),
      })
      .prefault({}),
    memory: z
      .strictObject({
        /** After each answered turn, ask the model which facts the person stated (one more model call per turn). */
        extractFacts: z.boolean().default(false),
      })
      .prefault({}),
    portal: z
      .strictObject({
        /** Where the portal (pages, JSON API, webhooks) listens. */
        host: z.string().min(1).default("127.0.0.1"),
        port: port.default(8080),
        /** The portal's public base URL (links in mails); defaults to http://host:port. */
        publicUrl: httpUrl.optional(),
        /** Tenant homeservers are named <slug>.<baseDomain>. */
        baseDomain: z
          .string()
          .regex(/^[a-z0-9.-]+$/, "must be a lowercase domain name")
          .max(200)
          .default("localhost"),
        /** How the runtime reaches a new tenant's homeserver until the provisioner sets its address; {serverName} is replaced. */
        homeserverUrlTemplate: z
          .string()
          .regex(/^https?:\/\/.*\{serverName\}/, "must be an http(s) URL containing {serverName}")
          .default("https://{serverName}"),
        /** Whether anyone may sign up (closed: operators invite by tenant membership only). */
        signup: z.enum(["open", "closed"]).default("open"),
        /** A session ends after this many days without use. */
        sessionIdleDays: z.number().int().min(1).max(365).default(14),
        /** Set when a reverse proxy terminates TLS in front of the portal (X-Forwarded-* is trusted). */
        trustProxy: z.boolean().default(false),
        /** Attempts per client address per minute on login, sign-up, password reset and invalid API tokens. */
        authAttemptsPerMinute: z.number().int().min(1).max(10_000).default(10),
        /** Requests per API token or session per minute on the JSON API. */
        apiRequestsPerMinute: z.number().int().min(1).max(1_000_000).default(1_200),
        /** A deleted tenant's data is kept this long (it can be restored by an operator), then erased. */
        deletionRetentionDays: z.number().int().min(0).max(3650).default(30),
        maxAvatarBytes: z
          .number()
          .int()
          .min(1024)
          .max(20 * 1024 * 1024)
          .default(1024 * 1024),
        mail: z
          .strictObject({
            /** smtp:// or smtps:// URL; without it, mails go to <dataDir>/outbox and the local outbox page. */
            smtpUrl: z
              .string()
              .regex(/^smtps?:\/\//, "must be an smtp:// or smtps:// URL")
              .optional(),
            from: z.string().min(3).max(200).default("Switchboard <noreply@localhost>"),
          })
          .prefault({}),
      })
      .prefault({}),
    /** Plans by id: their limits (null: unlimited). Billing maps them to prices. */
    plans: z
      .record(z.string().regex(/^[a-z0-9-]{1,32}$/, "must be a lowercase plan id"), PlanSchema)
      .default(DEFAULT_PLANS)
      .refine((plans) => Object.keys(plans).length > 0, "must define at least one plan"),
    /**
     * Stripe billing. Off without stripe.secretKey (self-hosting): operators
     * then assign plans from the CLI or the admin area.
     */
    billing: z
      .strictObject({
        stripe: z
          .strictObject({
            secretKey: z
              .string()
              .regex(/^(sk|rk)_[A-Za-z0-9_]+$/, "must be a Stripe secret or restricted key")
              .optional(),
            /** The webhook endpoint's signing secret (whsec_…). */
            webhookSecret: z
              .string()
              .regex(/^whsec_[A-Za-z0-9_]+$/, "must be a webhook signing secret (whsec_…)")
              .optional(),
            /** Where the Stripe API is; only changed for tests and mock servers. */
            apiUrl: httpUrl.optional(),
            /** The Billing Meter's event name that managed-key tokens are reported under. */
            meterEventName: z
              .string()
              .regex(/^[a-z0-9_]{1,100}$/)
              .default("switchboard_managed_tokens"),
          })
          .prefault({})
          .refine(
            (stripe) => stripe.secretKey === undefined || stripe.webhookSecret !== undefined,
            {
              message: "must be set when billing.stripe.secretKey is",
              path: ["webhookSecret"],
            },
          ),
        /** Days a tenant stays past due (agents answering, banner shown) before it is suspended. */
        graceDays: z.number().int().min(0).max(90).default(7),
        /** Days a cancelled tenant's data is kept before its homeserver and data are deleted. */
        cancellationRetentionDays: z.number().int().min(0).max(3650).default(30),
      })
      .prefault({}),
    /** The plan a new tenant starts on; must be one of plans. */
    defaultPlan: z.string().default("free"),
    synapse: z
      .strictObject({
        /** The Synapse chroot made by synapse/install.sh; a cache shared by all checkouts. */
        chrootDir: z.string().min(1).default("/var/cache/switchboard/synapse-chroot-v1"),
      })
      .prefault({}),
    /** The provisioner: the reconciler that runs each tenant's homeserver (src/provisioning). */
    provisioning: z
      .strictObject({
        /**
         * local: Synapse (and bridge) child processes on this machine; docker: containers
         * through the Docker Engine API; compose: one tenant's Synapse and bridges run as
         * docker-compose.yml services whose files Switchboard writes (src/provisioning/compose-driver.ts).
         */
        driver: z.enum(["local", "docker", "compose"]).default("local"),
        /** Time between reconcile passes (a pass also runs on demand, e.g. after a tenant is created). */
        reconcileIntervalMs: z.number().int().min(1000).max(3_600_000).default(30_000),
        /** How often the provisioner looks for new requests (a new tenant, an operator's re-provision) between passes. */
        demandPollMs: z.number().int().min(100).max(600_000).default(2_000),
        /** First retry delay after a failed pass for a tenant; doubles per failure up to maxBackoffMs. */
        initialBackoffMs: z.number().int().min(100).max(3_600_000).default(5_000),
        maxBackoffMs: z.number().int().min(1000).max(86_400_000).default(600_000),
        /** How long a started homeserver gets to pass /health and the appservice ping. */
        healthTimeoutMs: z.number().int().min(1000).max(600_000).default(120_000),
        /** Consecutive failures after which a tenant's homeserver is reported to the operator (error log + metric). */
        alertAfterFailures: z.number().int().min(1).max(1000).default(5),
        /** Per-tenant backups (src/provisioning/backups.ts), taken by the provisioner and on demand. */
        backups: z
          .strictObject({
            /** A tenant is backed up when its newest backup is older than this (the product promises 6 h at most). */
            intervalHours: z.number().min(0.1).max(24).default(6),
            /** Completed backups kept per tenant; older ones are deleted. */
            retain: z.number().int().min(1).max(1000).default(28),
            /** Where backups go; defaults to <dataDir>/backups. */
            dir: z.string().min(1).optional(),
          })
          .prefault({}),
        /** The health monitor (src/provisioning/health.ts) of running tenant homeservers. */
        health: z
          .strictObject({
            intervalMs: z.number().int().min(1000).max(3_600_000).default(30_000),
            /** Consecutive failed checks before a restart (a single blip restarts nothing). */
            restartAfterFailures: z.number().int().min(1).max(1000).default(2),
          })
          .prefault({}),
        local: z
          .strictObject({
            /** Address tenant homeservers listen on. */
            bindHost: z.string().min(1).default("127.0.0.1"),
            /** Ports handed out to tenant homeservers (one each, kept across restarts). */
            portRangeStart: port.default(18_100),
            portRangeEnd: port.default(18_999),
            /**
             * How to run each bridge here: the executable and leading arguments
             * (the driver appends `-c config.yaml -r registration.yaml`). A
             * network without one cannot be connected with the local driver.
             */
            bridgeCommands: z
              .strictObject({
                slack: z.array(z.string().min(1)).min(1).optional(),
                discord: z.array(z.string().min(1)).min(1).optional(),
                telegram: z.array(z.string().min(1)).min(1).optional(),
              })
              .prefault({}),
          })
          .prefault({})
          .refine((local) => local.portRangeStart <= local.portRangeEnd, {
            message: "must not be above portRangeEnd",
            path: ["portRangeStart"],
          }),
        /** The compose driver (self-hosting one tenant with docker-compose.yml). */
        compose: z
          .strictObject({
            /** Where the Synapse and bridge volumes are mounted: <filesDir>/synapse, <filesDir>/bridges/<network>. */
            filesDir: z.string().min(1).default("/compose"),
            /** The Synapse service as the runtime and the bridges reach it. */
            homeserverUrl: httpUrl.default("http://synapse:8008"),
            /** Superuser-ish URL that may CREATE ROLE/DATABASE; defaults to database.url. */
            postgresAdminUrl: z
              .string()
              .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
              .optional(),
            /** The PostgreSQL server as the Synapse and bridge services reach it. */
            postgresHost: z.string().min(1).default("postgres"),
            postgresPort: port.default(5432),
          })
          .prefault({}),
        /** The docker driver (src/provisioning/docker-driver.ts): one Synapse container per tenant. */
        docker: z
          .strictObject({
            /** The Docker Engine API's unix socket. */
            socketPath: z.string().min(1).default("/var/run/docker.sock"),
            synapseImage: z.string().min(1).default("matrixdotorg/synapse:v1.160.0"),
            /** The bridges' images (official mautrix images by default, see src/bridges/networks.ts). */
            bridgeImages: z
              .strictObject({
                slack: z.string().min(1).default(NETWORKS.slack.defaultImage),
                discord: z.string().min(1).default(NETWORKS.discord.defaultImage),
                telegram: z.string().min(1).default(NETWORKS.telegram.defaultImage),
              })
              .prefault({}),
            /** Network shared by the runtime, PostgreSQL and every tenant's Synapse (created if missing); the runtime reaches homeservers by container name on it. */
            network: z
              .string()
              .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, "must be a Docker network name")
              .default("switchboard"),
            /** Per-tenant Synapse databases on the shared PostgreSQL; without it tenant homeservers use SQLite in their volume. */
            postgres: z
              .strictObject({
                /** Superuser-ish URL that may CREATE ROLE/DATABASE; defaults to database.url. */
                adminUrl: z
                  .string()
                  .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
                  .optional(),
                /** The server as tenant containers reach it on the shared network. */
                host: z.string().min(1).default("postgres"),
                port: port.default(5432),
              })
              .optional(),
          })
          .prefault({}),
      })
      .prefault({}),
    /** Tenants' mautrix bridges (src/bridges), run by the provisioner next to each homeserver. */
    bridges: z
      .strictObject({
        /** How long a started bridge gets to answer its provisioning API before the pass fails. */
        readyTimeoutMs: z.number().int().min(1000).max(600_000).default(60_000),
        /**
         * Public base URL of the bridges' media endpoint (appservice.public_address), which
         * Discord needs to show agents' avatars on relayed messages; without it avatars are off.
         */
        publicMediaUrl: httpUrl.optional(),
      })
      .prefault({}),
    embedded: z
      .strictObject({
        /** server_name of the local homeserver that `switchboard start` runs. */
        serverName: z.string().min(1).default("localhost"),
        port: port.default(8008),
        /** Matrix account created for the person trying the service. */
        adminLocalpart: z
          .string()
          .regex(/^[a-z0-9._=-]{1,64}$/)
          .default("admin"),
        demoAgentName: z
          .string()
          .regex(/^[a-z0-9._=-]{1,32}$/)
          .default("ada"),
        /** Portal sign-in of the person trying the service: owner of the demo tenant and an operator. */
        adminEmail: z.email().default("admin@switchboard.localhost"),
      })
      .prefault({}),
  })
  .refine((config) => Object.hasOwn(config.plans, config.defaultPlan), {
    message: "must name one of plans",
    path: ["defaultPlan"],
  });

export type Config = z.infer<typeof ConfigSchema>;
