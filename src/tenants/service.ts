import type { Knex } from "knex";
import { z } from "zod";
import { parseOrThrow } from "../agents/validation.ts";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { scopeToTenant, withSystemTransaction, withTenant } from "../db/tenant-transaction.ts";
import { generateToken, sha256Hex } from "../secrets/cipher.ts";
import { badRequest, conflict, notFound } from "../shared/errors.ts";
import { isMatrixUserId, type TenantId } from "../shared/ids.ts";
import type { AccountId } from "../accounts/types.ts";
import { tenantAdmins, type AdminSource } from "./admins.ts";
import { memberships, type MemberRole } from "./memberships.ts";
import type { TenantRepository } from "./repository.ts";
import type { Tenant, TenantHomeserver, TenantStatus } from "./types.ts";

export const NewTenantSchema = z.strictObject({
  slug: z
    .string()
    .regex(
      /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/,
      "must be 1-32 lowercase letters, digits or '-', not starting or ending with '-'",
    ),
  name: z.string().trim().min(1).max(100),
  /** The homeserver's server_name: the part after ':' in every Matrix ID. */
  serverName: z
    .string()
    .regex(/^[a-z0-9.-]+(:\d{1,5})?$/i, "must be a hostname, optionally with :port")
    .max(255),
  /** Client-server API base URL the runtime uses to reach the homeserver. */
  homeserverUrl: z.url({ protocol: /^https?$/ }),
});
export type NewTenant = z.input<typeof NewTenantSchema>;

/** How a tenant starts: decided by the caller (CLI, portal), never by user input. */
export interface TenantStart {
  /** `active` when the homeserver already exists (CLI, embedded); `provisioning` when the provisioner must make it. */
  readonly status: TenantStatus;
  readonly plan?: string;
}

/** Creating tenants and their homeserver records (tokens generated here, stored encrypted). */
export class TenantService {
  readonly #db: Knex;
  readonly #tenants: TenantRepository;
  readonly #defaultPlan: string;

  constructor(db: Knex, tenants: TenantRepository, defaultPlan: string) {
    this.#db = db;
    this.#tenants = tenants;
    this.#defaultPlan = defaultPlan;
  }

  /**
   * Creates a tenant and its homeserver record in one transaction. `setup`,
   * when given, runs last in that same transaction, scoped to the new tenant
   * like withTenant (row-level security applies): what it writes (the first
   * owner, an audit entry) commits with the tenant, and if it throws, no
   * tenant is left behind.
   */
  async create(
    input: NewTenant,
    start: TenantStart = { status: "active" },
    setup?: (trx: Knex.Transaction, tenant: Tenant) => Promise<void>,
  ): Promise<{ tenant: Tenant; homeserver: TenantHomeserver }> {
    const { slug, name, serverName, homeserverUrl } = parseOrThrow(NewTenantSchema, input);
    return withSystemTransaction(this.#db, async (trx) => {
      if ((await this.#tenants.findBySlug(trx, slug)) !== undefined)
        throw conflict(`a tenant with slug "${slug}" already exists`);
      const taken: unknown = await trx("homeservers").where({ server_name: serverName }).first();
      if (taken !== undefined)
        throw conflict(`server name "${serverName}" is already used by another tenant`);
      const tenant = await this.#tenants.insertTenant(trx, {
        slug,
        name,
        plan: start.plan ?? this.#defaultPlan,
        status: start.status,
      });
      const hsToken = generateToken();
      const homeserver: TenantHomeserver = {
        tenantId: tenant.id,
        serverName,
        clientUrl: homeserverUrl.replace(/\/+$/, ""),
        registrationId: `switchboard-${slug}`,
        asToken: generateToken(),
        hsToken,
        hsTokenSha256: sha256Hex(hsToken),
      };
      await this.#tenants.insertHomeserver(trx, homeserver);
      if (setup !== undefined) {
        await scopeToTenant(trx, tenant.id);
        await setup(trx, tenant);
      }
      return { tenant, homeserver };
    });
  }

  /** Makes an account a member (no-op when it already is one); for bootstrap and the CLI. */
  async addMember(tenantId: TenantId, accountId: AccountId, role: MemberRole): Promise<void> {
    await withTenant(this.#db, tenantId, (trx) => memberships.add(trx, tenantId, accountId, role));
  }

  /** Lets a Matrix ID administer the tenant by chat. */
  async addAdmin(
    tenantId: TenantId,
    userId: string,
    source: AdminSource,
    by: Actor,
  ): Promise<void> {
    if (!isMatrixUserId(userId))
      throw badRequest(`"${userId.slice(0, 80)}" is not a Matrix ID like @alice:example.org`);
    await withTenant(this.#db, tenantId, async (trx) => {
      await tenantAdmins.add(trx, tenantId, userId, source);
      await auditLog.recordBy(trx, tenantId, by, "admin.add", userId, { source });
    });
  }

  async removeAdmin(tenantId: TenantId, userId: string, by: Actor): Promise<boolean> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const removed = await tenantAdmins.remove(trx, userId);
      if (removed) await auditLog.recordBy(trx, tenantId, by, "admin.remove", userId);
      return removed;
    });
  }

  async admins(tenantId: TenantId): Promise<{ userId: string; source: AdminSource }[]> {
    return withTenant(this.#db, tenantId, (trx) => tenantAdmins.list(trx));
  }

  async requireBySlug(slug: string): Promise<Tenant> {
    const tenant = await this.#tenants.findBySlug(this.#db, slug);
    if (tenant === undefined) throw notFound(`tenant "${slug}"`);
    return tenant;
  }

  async requireHomeserver(tenant: Tenant): Promise<TenantHomeserver> {
    const homeserver = await this.#tenants.findHomeserver(this.#db, tenant.id);
    if (homeserver === undefined) throw notFound(`homeserver of tenant "${tenant.slug}"`);
    return homeserver;
  }
}
