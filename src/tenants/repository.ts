import type { Knex } from "knex";
import type { SecretCipher } from "../secrets/cipher.ts";
import type { AccountId } from "../accounts/types.ts";
import type { TenantId } from "../shared/ids.ts";
import type { MemberRole } from "./memberships.ts";
import type { Tenant, TenantHomeserver, TenantStatus } from "./types.ts";

interface TenantRow {
  id: string;
  slug: string;
  name: string;
  status: TenantStatus;
  plan: string;
  delete_after: Date | null;
  created_at: Date;
}

interface HomeserverRow {
  tenant_id: string;
  server_name: string;
  client_url: string;
  registration_id: string;
  as_token_encrypted: string;
  hs_token_encrypted: string;
  hs_token_sha256: string;
}

function toTenant(row: TenantRow): Tenant {
  return {
    id: row.id as TenantId,
    slug: row.slug,
    name: row.name,
    status: row.status,
    plan: row.plan,
    deleteAfter: row.delete_after === null ? null : new Date(row.delete_after),
    createdAt: new Date(row.created_at),
  };
}

/**
 * Tenants and their homeservers. The service-wide lookups (all tenants, by
 * slug) run on the service connection; they are bookkeeping, not tenant data.
 */
export class TenantRepository {
  readonly #cipher: SecretCipher;

  constructor(cipher: SecretCipher) {
    this.#cipher = cipher;
  }

  async insertTenant(
    db: Knex,
    tenant: { slug: string; name: string; plan: string; status: TenantStatus },
  ): Promise<Tenant> {
    // A tenant that starts active has its homeserver already (see holds.ts).
    const provisioned = tenant.status === "provisioning" ? { provisioned_at: null } : {};
    const [row] = (await db("tenants")
      .insert({ ...tenant, ...provisioned })
      .returning("*")) as TenantRow[];
    return toTenant(row as TenantRow);
  }

  async findBySlug(db: Knex, slug: string): Promise<Tenant | undefined> {
    const row = (await db("tenants").where({ slug }).first()) as TenantRow | undefined;
    return row === undefined ? undefined : toTenant(row);
  }

  async findById(db: Knex, id: TenantId): Promise<Tenant | undefined> {
    const row = (await db("tenants").where({ id }).first()) as TenantRow | undefined;
    return row === undefined ? undefined : toTenant(row);
  }

  /**
   * The tenants an account belongs to, with its role in each, in the order it
   * joined them. This one lookup crosses tenants (it is how a signed-in person
   * finds their tenants), so it runs on the service connection; everything
   * read inside a tenant afterwards goes through withTenant.
   */
  async listForAccount(
    db: Knex,
    accountId: AccountId,
  ): Promise<{ tenant: Tenant; role: MemberRole }[]> {
    const rows = (await db("memberships")
      .join("tenants", "tenants.id", "memberships.tenant_id")
      .where("memberships.account_id", accountId)
      .orderBy("memberships.created_at")
      .select("tenants.*", "memberships.role as member_role")) as (TenantRow & {
      member_role: MemberRole;
    })[];
    return rows.map((row) => ({ tenant: toTenant(row), role: row.member_role }));
  }

  /** The server name of a tenant's homeserver, without decrypting its tokens. */
  async serverName(db: Knex, tenantId: TenantId): Promise<string | undefined> {
    const row = (await db("homeservers").where({ tenant_id: tenantId }).first("server_name")) as
      { server_name: string } | undefined;
    return row?.server_name;
  }

  async listTenants(db: Knex): Promise<Tenant[]> {
    const rows = (await db("tenants").orderBy("created_at")) as TenantRow[];
    return rows.map(toTenant);
  }

  async insertHomeserver(
    db: Knex,
    homeserver: Omit<TenantHomeserver, "hsTokenSha256"> & { hsTokenSha256: string },
  ): Promise<void> {
    await db("homeservers").insert({
      tenant_id: homeserver.tenantId,
      server_name: homeserver.serverName,
      client_url: homeserver.clientUrl,
      registration_id: homeserver.registrationId,
      as_token_encrypted: this.#cipher.encrypt(homeserver.asToken),
      hs_token_encrypted: this.#cipher.encrypt(homeserver.hsToken),
      hs_token_sha256: homeserver.hsTokenSha256,
    });
  }

  async updateHomeserverUrl(db: Knex, tenantId: TenantId, clientUrl: string): Promise<void> {
    await db("homeservers").where({ tenant_id: tenantId }).update({ client_url: clientUrl });
  }

  async findHomeserver(db: Knex, tenantId: TenantId): Promise<TenantHomeserver | undefined> {
    const row = (await db("homeservers").where({ tenant_id: tenantId }).first()) as
      HomeserverRow | undefined;
    return row === undefined ? undefined : this.#toHomeserver(row);
  }

  async listHomeservers(db: Knex): Promise<TenantHomeserver[]> {
    const rows = (await db("homeservers")) as HomeserverRow[];
    return rows.map((row) => this.#toHomeserver(row));
  }

  #toHomeserver(row: HomeserverRow): TenantHomeserver {
    return {
      tenantId: row.tenant_id as TenantId,
      serverName: row.server_name,
      clientUrl: row.client_url,
      registrationId: row.registration_id,
      asToken: this.#cipher.decrypt(row.as_token_encrypted),
      hsToken: this.#cipher.decrypt(row.hs_token_encrypted),
      hsTokenSha256: row.hs_token_sha256,
    };
  }
}
