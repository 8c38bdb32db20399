import type { Knex } from "knex";
import type { Account, AccountId } from "../accounts/types.ts";
import { parseOrThrow } from "../agents/validation.ts";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import type { Config } from "../config/schema.ts";
import { AppError } from "../shared/errors.ts";
import { memberships, type MemberRole } from "./memberships.ts";
import type { TenantRepository } from "./repository.ts";
import { NewTenantSchema, type TenantService } from "./service.ts";
import type { Tenant, TenantStatus } from "./types.ts";

/** What a person chooses for a new tenant; the server name and homeserver URL follow from it. */
export const TenantRequestSchema = NewTenantSchema.pick({ slug: true, name: true });

/** How a status reads to customers: the database's "active" is a running homeserver. */
export type TenantStatusLabel = "provisioning" | "running" | "suspended";

export function statusLabel(status: TenantStatus): TenantStatusLabel {
  return status === "active" ? "running" : status;
}

/** Everything the overview shows about a tenant, for one member. */
export interface TenantOverview {
  readonly tenant: Tenant;
  readonly statusLabel: TenantStatusLabel;
  readonly planName: string;
  readonly serverName: string | null;
  readonly homeserverUrl: string | null;
  /** The service's bot on this homeserver, to DM for chat administration. */
  readonly botUserId: string | null;
  /** How agents are named here: @<prefix><name>:<server>. */
  readonly agentUserIdPattern: string | null;
  readonly role: MemberRole;
  /** The viewer's own linked Matrix ID in this tenant. */
  readonly matrixUserId: string | null;
}

/**
 * Creating tenants from the portal and describing them to their members.
 * A portal tenant starts "provisioning" (the provisioner makes its
 * homeserver), named `<slug>.<portal.baseDomain>`, with its creator as owner.
 */
export class TenantOnboarding {
  readonly #db: Knex;
  readonly #tenants: TenantService;
  readonly #repository: TenantRepository;
  readonly #config: Readonly<Config>;

  constructor(
    db: Knex,
    tenants: TenantService,
    repository: TenantRepository,
    config: Readonly<Config>,
  ) {
    this.#db = db;
    this.#tenants = tenants;
    this.#repository = repository;
    this.#config = config;
  }

  /**
   * Creates a tenant owned by the account. The tenant, its homeserver record,
   * the owner's membership and the audit entry commit together or not at all.
   */
  async create(account: Account, input: unknown, by: Actor): Promise<Tenant> {
    if (!account.emailVerified)
      throw new AppError(
        "forbidden",
        "verify your email address before creating a tenant (we mailed you a link)",
      );
    const { slug, name } = parseOrThrow(TenantRequestSchema, input);
    const serverName = this.serverNameFor(slug);
    const { tenant } = await this.#tenants.create(
      {
        slug,
        name,
        serverName,
        homeserverUrl: this.#config.portal.homeserverUrlTemplate.replaceAll(
          "{serverName}",
          serverName,
        ),
      },
      { status: "provisioning" },
      async (trx, created) => {
        await memberships.add(trx, created.id, account.id, "owner");
        await auditLog.recordBy(trx, created.id, by, "tenant.create", slug, {
          name,
          serverName,
          plan: created.plan,
        });
      },
    );
    return tenant;
  }

  serverNameFor(slug: string): string {
    return `${slug}.${this.#config.portal.baseDomain}`;
  }

  /**
   * A page of the account's tenants with its role in each, oldest
   * membership first. Reads the memberships on the service connection (the
   * one cross-tenant lookup, see memberships.tenantsOf).
   */
  async tenantsOf(
    accountId: AccountId,
    page: { limit: number; offset: number },
  ): Promise<{ tenant: Tenant; role: MemberRole }[]> {
    const all = await this.#repository.listForAccount(this.#db, accountId);
    return all.slice(page.offset, page.offset + page.limit);
  }

  /** The overview of a tenant for a member (`accountId`) or an API token (null). */
  async overview(
    tenant: Tenant,
    role: MemberRole,
    matrixUserId: string | null,
  ): Promise<TenantOverview> {
    const homeserver = await this.#repository.findHomeserver(this.#db, tenant.id);
    const serverName = homeserver?.serverName ?? null;
    const { botLocalpart, agentPrefix } = this.#config.runtime;
    return {
      tenant,
      statusLabel: statusLabel(tenant.status),
      planName: this.#config.plans[tenant.plan]?.name ?? tenant.plan,
      serverName,
      homeserverUrl: homeserver?.clientUrl ?? null,
      botUserId: serverName === null ? null : `@${botLocalpart}:${serverName}`,
      agentUserIdPattern: serverName === null ? null : `@${agentPrefix}<name>:${serverName}`,
      role,
      matrixUserId,
    };
  }
}
