import type { Knex } from "knex";
import { withTenant } from "../db/tenant-transaction.ts";
import { badRequest } from "../shared/errors.ts";
import { isMatrixUserId, type PersonId, type TenantId } from "../shared/ids.ts";
import { exportPersonData } from "./export.ts";
import { linkIdentities, personIdsFor, unlinkIdentity } from "./people.ts";

/**
 * Tenant-scoped memory operations for operators and admins (CLI today; chat
 * commands and the portal later), each in its own tenant transaction.
 */
export class MemoryService {
  readonly #db: Knex;

  constructor(db: Knex) {
    this.#db = db;
  }

  /** Makes two Matrix IDs (e.g. someone's account and their Telegram ghost) one person. */
  async link(tenantId: TenantId, userIdA: string, userIdB: string): Promise<PersonId> {
    if (!isMatrixUserId(userIdA) || !isMatrixUserId(userIdB))
      throw badRequest("both arguments must be Matrix IDs like @alice:example.org");
    if (userIdA === userIdB) throw badRequest("cannot link a Matrix ID to itself");
    return withTenant(this.#db, tenantId, (trx) => linkIdentities(trx, userIdA, userIdB));
  }

  async unlink(tenantId: TenantId, userId: string): Promise<PersonId> {
    if (!isMatrixUserId(userId))
      throw badRequest("the argument must be a Matrix ID like @alice:example.org");
    return withTenant(this.#db, tenantId, (trx) => unlinkIdentity(trx, userId));
  }

  /** Everything remembered about the person behind a Matrix ID (GDPR access), or null if unknown. */
  async exportFor(tenantId: TenantId, userId: string): Promise<unknown> {
    if (!isMatrixUserId(userId))
      throw badRequest("the argument must be a Matrix ID like @alice:example.org");
    return withTenant(this.#db, tenantId, async (trx) => {
      const [personId] = await personIdsFor(trx, userId);
      return personId === undefined ? null : exportPersonData(trx, personId);
    });
  }
}
