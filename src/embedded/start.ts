import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { agentUserId } from "../agents/identity.ts";
import type { Config } from "../config/schema.ts";
import { createApp, type App } from "../main.ts";
import { createProvisioner, type Provisioner } from "../provisioning/provisioner.ts";
import { AppError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import { loginWithPassword, registerWithSharedSecret } from "../synapse/admin-api.ts";
import { SynapseProcess } from "../synapse/homeserver-process.ts";

const DEMO_TENANT_SLUG = "demo";
const DEMO_FILE = "demo.json";

/** What a newcomer needs to start talking, printed and written to <dataDir>/demo.json. */
export interface DemoDetails {
  readonly homeserverUrl: string;
  readonly serverName: string;
  readonly user: string;
  readonly password: string;
  readonly agent: string;
  /** The service bot: DM it to manage agents by chat. */
  readonly bot: string;
  /** The web portal, and who signs in there (same password as the Matrix account). */
  readonly portalUrl: string;
  readonly portalEmail: string;
  readonly modelConfigured: boolean;
}

interface StoredDemo {
  readonly password: string;
  readonly sharedSecret: string;
}

export interface EmbeddedStack {
  readonly app: App;
  readonly homeserver: SynapseProcess;
  /** Runs the homeservers of tenants created in the portal; the demo's is started by hand above. */
  readonly provisioner: Provisioner;
  readonly demo: DemoDetails;
  stop(): Promise<void>;
}

/**
 * The embedded default: database (PGlite unless DATABASE_URL), a local
 * Synapse with our registration, the runtime, and a demo tenant with one
 * agent and one human account. Idempotent across restarts: everything is
 * created on first start and reused after.
 */
export async function startEmbedded(config: Readonly<Config>): Promise<EmbeddedStack> {
  const app = await createApp(config);
  const log = app.log.child({ module: "embedded" });
  const { serverName, port, adminLocalpart, demoAgentName } = config.embedded;
  const clientUrl = `http://127.0.0.1:${port}`;
  const stored = await loadOrCreateStoredDemo(config.dataDir);

  let tenant = await app.tenantRepository.findBySlug(app.database.knex, DEMO_TENANT_SLUG);
  if (tenant === undefined) {
    tenant = (
      await app.tenants.create({
        slug: DEMO_TENANT_SLUG,
        name: "Demo",
        serverName,
        homeserverUrl: clientUrl,
      })
    ).tenant;
    log.info({ tenantId: tenant.id }, "created the demo tenant");
  }
  const homeserverRecord = await app.tenants.requireHomeserver(tenant);
  if (homeserverRecord.serverName !== serverName) {
    throw new AppError(
      "bad_request",
      `the data directory holds a homeserver for "${homeserverRecord.serverName}", not embedded.serverName "${serverName}"; use another dataDir`,
    );
  }
  if (homeserverRecord.clientUrl !== clientUrl)
    await app.tenantRepository.updateHomeserverUrl(app.database.knex, tenant.id, clientUrl);

  const homeserver = new SynapseProcess(
    {
      serverName,
      bindHost: "127.0.0.1",
      port,
      dataDir: join(config.dataDir, "homeservers", DEMO_TENANT_SLUG),
      database: { kind: "sqlite" },
      registrationSharedSecret: stored.sharedSecret,
      appserviceRegistrations: {
        "switchboard.yaml": app.registrationYaml({ ...homeserverRecord, clientUrl }),
      },
    },
    { chrootDir: config.synapse.chrootDir, logger: log },
  );
  await homeserver.start();
  await app.runtime.start();

  await ensureHumanAccount(clientUrl, stored, adminLocalpart);
  // The person trying the service is its bootstrap admin, in chat too.
  await app.tenants.addAdmin(tenant.id, `@${adminLocalpart}:${serverName}`, "bootstrap", {
    id: "operator",
    via: "cli",
  });
  const agentName = await ensureDemoAgent(app, tenant.id, demoAgentName);
  const owner = await app.accounts.makeOperator(config.embedded.adminEmail, stored.password);
  await app.tenants.addMember(tenant.id, owner.id, "owner");
  const portalUrl = await app.portal.start();
  // The demo tenant was created active with its homeserver, so the provisioner leaves it alone.
  const provisioner = await createProvisioner(app);
  provisioner.start();
  const demo: DemoDetails = {
    homeserverUrl: clientUrl,
    serverName,
    user: `@${adminLocalpart}:${serverName}`,
    password: stored.password,
    agent: agentUserId(config.runtime.agentPrefix, agentName, serverName),
    bot: `@${config.runtime.botLocalpart}:${serverName}`,
    portalUrl: config.portal.publicUrl ?? portalUrl,
    portalEmail: owner.email,
    modelConfigured:
      config.models.openai.apiKey !== undefined ||
      config.models.anthropic.apiKey !== undefined ||
      config.models.openai.baseUrl !== "https://api.openai.com/v1",
  };
  await writeFile(join(config.dataDir, DEMO_FILE), `${JSON.stringify(demo, null, 2)}\n`, {
    mode: 0o600,
  });
  return {
    app,
    homeserver,
    provisioner,
    demo,
    stop: async () => {
      await provisioner.stop();
      await app.close();
      await homeserver.stop();
    },
  };
}

async function loadOrCreateStoredDemo(dataDir: string): Promise<StoredDemo> {
  const file = join(dataDir, "demo-secrets.json");
  try {
    return JSON.parse(await readFile(file, "utf8")) as StoredDemo;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const stored: StoredDemo = {
    password: randomBytes(12).toString("base64url"),
    sharedSecret: randomBytes(32).toString("base64url"),
  };
  await mkdir(dataDir, { recursive: true });
  await writeFile(file, JSON.stringify(stored), { mode: 0o600 });
  return stored;
}

/** The person trying the service gets an account; on later starts it already exists. */
async function ensureHumanAccount(
  clientUrl: string,
  stored: StoredDemo,
  localpart: string,
): Promise<void> {
  try {
    await loginWithPassword(clientUrl, localpart, stored.password);
  } catch {
    await registerWithSharedSecret(clientUrl, stored.sharedSecret, {
      localpart,
      password: stored.password,
      admin: true,
      displayName: "Admin",
    });
  }
}

async function ensureDemoAgent(app: App, tenantId: TenantId, name: string): Promise<string> {
  const existing = await app.agents.list(tenantId);
  if (existing.length > 0) return (existing[0] as { name: string }).name;
  const agent = await app.agents.create(
    tenantId,
    {
      name,
      instructions:
        "You are a friendly, concise assistant for this team. You remember what people tell you about themselves.",
    },
    { id: "operator", via: "cli" },
  );
  return agent.name;
}
