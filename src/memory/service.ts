import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { badRequest } from "../shared/errors.ts";
import {
  isMatrixUserId,
  isUuid,
  type FactId,
  type MatrixUserId,
  type PersonId,
  type TenantId,
} from "../shared/ids.ts";
import { exportPersonData, type PersonExport } from "./export.ts";
import { deleteFactsOfPerson, forgetFactById, listFacts } from "./facts.ts";
import { linkIdentities, personIdsFor, unlinkIdentity } from "./people.ts";
import type { Fact } from "./types.ts";

function requireUserId(value: string): MatrixUserId {
  if (!isMatrixUserId(value))
    throw badRequest(`"${value.slice(0, 80)}" is not a Matrix ID like @alice:example.org`);
  return value;
}

/**
 * Tenant-scoped memory operations for people and admins (CLI, chat commands,
 * later the portal), each in one tenant transaction with its audit entry.
 */
export class MemoryService {
  readonly #db: Knex;

  constructor(db: Knex) {
    this.#db = db;
  }

  /** Makes two Matrix IDs (e.g. someone's account and their Telegram ghost) one person. */
  async link(tenantId: TenantId, userIdA: string, userIdB: string, by: Actor): Promise<PersonId> {
    const a = requireUserId(userIdA);
    const b = requireUserId(userIdB);
    if (a === b) throw badRequest("cannot link a Matrix ID to itself");
    return withTenant(this.#db, tenantId, async (trx) => {
      const personId = await linkIdentities(trx, a, b);
      await auditLog.recordBy(trx, tenantId, by, "person.link", `${a} ${b}`);
      return personId;
    });
  }

  async unlink(tenantId: TenantId, userId: string, by: Actor): Promise<PersonId> {
    const id = requireUserId(userId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const personId = await unlinkIdentity(trx, id);
      await auditLog.recordBy(trx, tenantId, by, "person.unlink", id);
      return personId;
    });
  }

  /** Current facts about the person behind a Matrix ID (all agents' facts), newest first. */
  async factsAbout(tenantId: TenantId, userId: string, limit: number): Promise<Fact[]> {
    const id = requireUserId(userId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const [personId] = await personIdsFor(trx, id);
      return personId === undefined ? [] : listFacts(trx, { personId, limit });
    });
  }

  /**
   * Forgets one fact by id. With `onlyAbout`, the fact must be about the
   * person behind that Matrix ID (people forgetting their own facts).
   */
  async forgetFact(
    tenantId: TenantId,
    factId: string,
    by: Actor,
    onlyAbout?: string,
  ): Promise<boolean> {
    if (!isUuid(factId))
      throw badRequest(
        `"${factId.slice(0, 80)}" is not a fact id (they look like 1b4e28ba-2fa1-11d2-883f-0016d3cca427)`,
      );
    return withTenant(this.#db, tenantId, async (trx) => {
      let personId: PersonId | undefined;
      if (onlyAbout !== undefined) {
        [personId] = await personIdsFor(trx, requireUserId(onlyAbout));
        if (personId === undefined) return false;
      }
      const forgotten = await forgetFactById(trx, factId as FactId, personId);
      if (forgotten) await auditLog.recordBy(trx, tenantId, by, "memory.forget", factId);
      return forgotten;
    });
  }

  /** Erases every fact about the person behind a Matrix ID (GDPR erasure of memory). */
  async forgetEverythingAbout(tenantId: TenantId, userId: string, by: Actor): Promise<number> {
    const id = requireUserId(userId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const [personId] = await personIdsFor(trx, id);
      const count = personId === undefined ? 0 : await deleteFactsOfPerson(trx, personId);
      await auditLog.recordBy(trx, tenantId, by, "memory.forget_all", id, { facts: count });
      return count;
    });
  }

  /** Everything remembered about the person behind a Matrix ID (GDPR access), or null if unknown. */
  async exportFor(tenantId: TenantId, userId: string, by?: Actor): Promise<PersonExport | null> {
    const id = requireUserId(userId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const [personId] = await personIdsFor(trx, id);
      if (personId === undefined) return null;
      const exported = await exportPersonData(trx, personId);
      if (by !== undefined) await auditLog.recordBy(trx, tenantId, by, "memory.export", id);
      return exported;
    });
  }
}
