import { randomBytes } from "node:crypto";
import type { Knex } from "knex";
import type { Actor } from "../audit/audit-log.ts";
import type { AgentService } from "../agents/service.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { isAppError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import { loginWithPassword, registerWithSharedSecret } from "../synapse/admin-api.ts";
import type { Entitlements } from "../tenants/entitlements.ts";
import type { TenantService } from "../tenants/service.ts";
import type { TenantHomeserver } from "../tenants/types.ts";
import { ensureAppserviceUser, ensureMarkedRoom } from "./homeserver-checks.ts";
import { provisioningState } from "./state.ts";

/** The tenant's first Matrix account: a homeserver admin and a tenant admin in chat. */
export const BOOTSTRAP_ADMIN_LOCALPART = "admin";
const MANAGEMENT_ROOM_MARKER = "org.switchboard.management_room";
const DEMO_AGENT_NAME = "ada";
const DEMO_AGENT_INSTRUCTIONS =
  "You are a friendly, concise assistant for this team. You remember what people tell you about themselves.";
/** Like STRIPE_ACTOR: the audit log names the service that acted. */
const PROVISIONER: Actor = { id: "provisioner", via: "api" };

export interface BootstrapInput {
  readonly tenantId: TenantId;
  readonly homeserver: TenantHomeserver;
  readonly registrationSharedSecret: string;
  /** What earlier (maybe crashed) bootstraps recorded. */
  readonly adminPasswordEncrypted: string | null;
  readonly managementRoomId: string | null;
}

/**
 * Makes a freshly provisioned homeserver usable, once: the bootstrap admin
 * account, the management room with the service bot, the demo agent. Every
 * part is idempotent and its result is recorded before the next part starts,
 * so a crash anywhere is finished by the next pass. A seam for unit tests.
 */
export interface TenantBootstrapper {
  bootstrap(input: BootstrapInput): Promise<void>;
}

export interface MatrixBootstrapperDeps {
  readonly db: Knex;
  readonly cipher: SecretCipher;
  readonly tenants: TenantService;
  readonly agents: AgentService;
  readonly entitlements: Entitlements;
  readonly botLocalpart: string;
}

/**
 * The bootstrap admin's password is generated here, stored encrypted in
 * provisioning.admin_password_encrypted before the account is made (a
 * crash after registering still knows it), and shown to the tenant's
 * owners in the portal until they dismiss it.
 */
export class MatrixBootstrapper implements TenantBootstrapper {
  readonly #deps: MatrixBootstrapperDeps;

  constructor(deps: MatrixBootstrapperDeps) {
    this.#deps = deps;
  }

  async bootstrap(input: BootstrapInput): Promise<void> {
    const { db, cipher } = this.#deps;
    const { tenantId, homeserver } = input;
    const adminUserId = `@${BOOTSTRAP_ADMIN_LOCALPART}:${homeserver.serverName}`;

    let passwordEncrypted = input.adminPasswordEncrypted;
    if (passwordEncrypted === null) {
      passwordEncrypted = cipher.encrypt(randomBytes(18).toString("base64url"));
      await provisioningState.update(db, tenantId, {
        admin_user_id: adminUserId,
        admin_password_encrypted: passwordEncrypted,
      });
    }
    await this.#ensureAdminAccount(input, cipher.decrypt(passwordEncrypted));
    await this.#deps.tenants.addAdmin(tenantId, adminUserId, "bootstrap", PROVISIONER);

    await ensureAppserviceUser(homeserver.clientUrl, homeserver.asToken, this.#deps.botLocalpart);
    const roomId =
      input.managementRoomId ??
      (await ensureMarkedRoom(homeserver.clientUrl, homeserver.asToken, {
        name: "Switchboard",
        topic: "Manage this workspace's AI agents: say `help`.",
        invite: [adminUserId],
        markerType: MANAGEMENT_ROOM_MARKER,
      }));
    // The bot treats rooms it knows as its own (commands without `!sb`).
    await withTenant(db, tenantId, (trx) =>
      trx("bot_rooms")
        .insert({ tenant_id: tenantId, room_id: roomId, is_direct: true, membership: "join" })
        .onConflict(["tenant_id", "room_id"])
        .ignore(),
    );
    await provisioningState.update(db, tenantId, { management_room_id: roomId });
    await this.#ensureDemoAgent(tenantId);
  }

  async #ensureAdminAccount(input: BootstrapInput, password: string): Promise<void> {
    const { clientUrl } = input.homeserver;
    try {
      await registerWithSharedSecret(clientUrl, input.registrationSharedSecret, {
        localpart: BOOTSTRAP_ADMIN_LOCALPART,
        password,
        admin: true,
        displayName: "Admin",
      });
    } catch (error) {
      if (!isAppError(error) || error.code !== "conflict") throw error;
      // Registered by an earlier pass: the stored password must still work.
      await loginWithPassword(clientUrl, BOOTSTRAP_ADMIN_LOCALPART, password);
    }
  }

  /** The demo agent, unless the plan allows no agents or the tenant already has some. */
  async #ensureDemoAgent(tenantId: TenantId): Promise<void> {
    const { plan } = await this.#deps.entitlements.planOf(tenantId);
    if (plan.agents === 0) return;
    if ((await this.#deps.agents.list(tenantId)).length > 0) return;
    await this.#deps.agents.create(
      tenantId,
      { name: DEMO_AGENT_NAME, instructions: DEMO_AGENT_INSTRUCTIONS },
      PROVISIONER,
    );
  }
}
