import type { Knex } from "knex";
import { z } from "zod";
import { parseOrThrow } from "../agents/validation.ts";
import { withSystemTransaction } from "../db/tenant-transaction.ts";
import { generateToken, sha256Hex } from "../secrets/cipher.ts";
import { conflict, notFound } from "../shared/errors.ts";
import type { TenantRepository } from "./repository.ts";
import type { Tenant, TenantHomeserver } from "./types.ts";

export const NewTenantSchema = z.strictObject({
  slug: z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/, "must be 1-32 lowercase letters, digits or '-', not starting or ending with '-'"),
  name: z.string().trim().min(1).max(100),
  /** The homeserver's server_name: the part after ':' in every Matrix ID. */
  serverName: z.string().regex(/^[a-z0-9.-]+(:\d{1,5})?$/i, "must be a hostname, optionally with :port").max(255),
  /** Client-server API base URL the runtime uses to reach the homeserver. */
  homeserverUrl: z.url({ protocol: /^https?$/ }),
});
export type NewTenant = z.input<typeof NewTenantSchema>;

/** Creating tenants and their homeserver records (tokens generated here, stored encrypted). */
export class TenantService {
  readonly #db: Knex;
  readonly #tenants: TenantRepository;

  constructor(db: Knex, tenants: TenantRepository) {
    this.#db = db;
    this.#tenants = tenants;
  }

  async create(input: NewTenant): Promise<{ tenant: Tenant; homeserver: TenantHomeserver }> {
    const { slug, name, serverName, homeserverUrl } = parseOrThrow(NewTenantSchema, input);
    return withSystemTransaction(this.#db, async (trx) => {
      if ((await this.#tenants.findBySlug(trx, slug)) !== undefined) throw conflict(`a tenant with slug "${slug}" already exists`);
      const taken: unknown = await trx("homeservers").where({ server_name: serverName }).first();
      if (taken !== undefined) throw conflict(`server name "${serverName}" is already used by another tenant`);
      const tenant = await this.#tenants.insertTenant(trx, { slug, name });
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
      return { tenant, homeserver };
    });
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
