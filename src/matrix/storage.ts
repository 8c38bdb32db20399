import type { Knex } from "knex";
import type { IAppserviceStorageProvider } from "matrix-bot-sdk";
import { withTenant } from "../db/tenant-transaction.ts";
import type { TenantId } from "../shared/ids.ts";

/**
 * matrix-bot-sdk's storage for one tenant, in the database: which virtual
 * users are registered (so restarts do not re-register every agent) and
 * which transactions are complete. Unlike MemoryStorageProvider it neither
 * forgets on restart nor grows without bound in memory.
 */
export class TenantAppserviceStorage implements IAppserviceStorageProvider {
  readonly #db: Knex;
  readonly #tenantId: TenantId;
  /** Registered users seen in this process; registration never reverts. */
  readonly #registered = new Set<string>();

  constructor(db: Knex, tenantId: TenantId) {
    this.#db = db;
    this.#tenantId = tenantId;
  }

  async addRegisteredUser(userId: string): Promise<void> {
    await withTenant(this.#db, this.#tenantId, (trx) =>
      trx("appservice_users")
        .insert({ tenant_id: this.#tenantId, user_id: userId })
        .onConflict(["tenant_id", "user_id"])
        .ignore(),
    );
    this.#registered.add(userId);
  }

  async isUserRegistered(userId: string): Promise<boolean> {
    if (this.#registered.has(userId)) return true;
    const row: unknown = await withTenant(this.#db, this.#tenantId, (trx) =>
      trx("appservice_users").where({ user_id: userId }).first(),
    );
    if (row !== undefined) this.#registered.add(userId);
    return row !== undefined;
  }

  async setTransactionCompleted(transactionId: string): Promise<void> {
    await withTenant(this.#db, this.#tenantId, (trx) =>
      trx("appservice_transactions")
        .insert({ tenant_id: this.#tenantId, txn_id: transactionId })
        .onConflict(["tenant_id", "txn_id"])
        .ignore(),
    );
  }

  async isTransactionCompleted(transactionId: string): Promise<boolean> {
    const row: unknown = await withTenant(this.#db, this.#tenantId, (trx) =>
      trx("appservice_transactions").where({ txn_id: transactionId }).first(),
    );
    return row !== undefined;
  }
}
