import { AsyncLocalStorage } from "node:async_hooks";
import type { Knex } from "knex";
import { AppError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";

/** The role tenant transactions run as; row-level security applies to it. */
export const APP_ROLE = "switchboard_app";

interface TransactionScope {
  readonly tenantId: TenantId | null;
}

const openTransaction = new AsyncLocalStorage<TransactionScope>();

/**
 * Runs `work` in one database transaction scoped to a tenant: the session
 * switches to the non-superuser APP_ROLE and sets `app.tenant_id`, so every
 * row-level-security policy limits reads and writes to that tenant. Commit on
 * success, rollback on throw. Do no network calls inside `work` (side effects
 * belong after commit), and use only `trx`: the root handle is refused inside
 * (see installTransactionGuard).
 */
export function withTenant<T>(
  db: Knex,
  tenantId: TenantId,
  work: (trx: Knex.Transaction) => Promise<T>,
): Promise<T> {
  return db.transaction((trx) =>
    openTransaction.run({ tenantId }, async () => {
      await scopeToTenant(trx, tenantId);
      return work(trx);
    }),
  );
}

/**
 * Scopes the rest of an open transaction to a tenant, as withTenant does
 * (APP_ROLE, `app.tenant_id`): for a transaction that creates the tenant and
 * then writes its first tenant data.
 */
export async function scopeToTenant(trx: Knex.Transaction, tenantId: TenantId): Promise<void> {
  // One round trip: the tenant and the role (set_config('role') is SET LOCAL ROLE).
  await trx.raw(
    `select set_config('app.tenant_id', ?, true), set_config('role', '${APP_ROLE}', true)`,
    [tenantId],
  );
}

/**
 * A transaction for service-wide tables (tenants, homeservers) that are not
 * scoped to one tenant. Same guard as withTenant.
 */
export function withSystemTransaction<T>(
  db: Knex,
  work: (trx: Knex.Transaction) => Promise<T>,
): Promise<T> {
  return db.transaction((trx) => openTransaction.run({ tenantId: null }, () => work(trx)));
}

/**
 * Makes a query on the root handle fail while a transaction is open in the
 * same async context. On PGlite (one connection) such a query would wait for
 * the transaction that waits for it: a silent 60 s hang; on PostgreSQL it
 * would escape the transaction and its tenant scope. Either is a bug, so it
 * fails at once with a message that names the fix.
 */
export function installTransactionGuard(db: Knex): void {
  // A transaction's own client has its connection bound and never calls the
  // root client's acquireConnection, so a call that arrives here while a
  // scope is open came from the root handle.
  const client = db.client as { acquireConnection: () => Promise<unknown> };
  const acquire = client.acquireConnection.bind(client);
  client.acquireConnection = () => {
    if (openTransaction.getStore() !== undefined) {
      return Promise.reject(
        new AppError(
          "internal",
          "database handle used inside a transaction: use the transaction's trx instead",
        ),
      );
    }
    return acquire();
  };
}
