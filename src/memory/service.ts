import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { badRequest, notFound } from "../shared/errors.ts";
import {
  isMatrixUserId,
  isUuid,
  type FactId,
  type MatrixUserId,
  type PersonId,
  type TenantId,
} from "../shared/ids.ts";
import {
  factsOfPerson,
  listPeople,
  searchFacts,
  type BrowsedFact,
  type KeysetPage,
  type PersonSummary,
} from "./browse.ts";
import { exportPersonData, type PersonExport } from "./export.ts";
import { deleteFactsOfPerson, forgetFactById, listFacts } from "./facts.ts";
import {
  getPerson,
  identitiesOf,
  linkIdentities,
  personIdsFor,
  unlinkIdentity,
  type Identity,
  type Person,
} from "./people.ts";
import type { Fact } from "./types.ts";

function requireUserId(value: string): MatrixUserId {
  if (!isMatrixUserId(value))
    throw badRequest(`"${value.slice(0, 80)}" is not a Matrix ID like @alice:example.org`);
  return value;
}

/** Longest search text, in characters (only the start of a longer one is searched). */
export const MAX_SEARCH_CHARS = 200;

/** A person as the portal shows them: who, which Matrix IDs, how much is remembered. */
export interface PersonDetails {
  readonly person: Person;
  readonly identities: readonly Identity[];
}

/** A person id from a URL: anything that is not one is simply not found. */
function personIdOrNotFound(value: string): PersonId {
  if (!isUuid(value)) throw notFound("person");
  return value as PersonId;
}

/**
 * Tenant-scoped memory operations for people and admins (CLI, chat commands,
 * portal, API), each in one tenant transaction with its audit entry.
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

  /** People the agents know, newest first (limit + 1 rows: the extra one means "more"). */
  async people(tenantId: TenantId, page: KeysetPage): Promise<PersonSummary[]> {
    return withTenant(this.#db, tenantId, (trx) => listPeople(trx, page));
  }

  async person(tenantId: TenantId, personId: string): Promise<PersonDetails> {
    const id = personIdOrNotFound(personId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const person = await getPerson(trx, id);
      if (person === undefined) throw notFound("person");
      return { person, identities: await identitiesOf(trx, id) };
    });
  }

  /** Current facts about a person, newest first (limit + 1 rows); not_found for an unknown person. */
  async factsOfPerson(
    tenantId: TenantId,
    personId: string,
    page: KeysetPage,
  ): Promise<BrowsedFact[]> {
    const id = personIdOrNotFound(personId);
    return withTenant(this.#db, tenantId, async (trx) => {
      if ((await getPerson(trx, id)) === undefined) throw notFound("person");
      return factsOfPerson(trx, id, page);
    });
  }

  /** Current facts matching every word of `text`, best first (all agents' facts: for admins). */
  async search(tenantId: TenantId, text: string, limit: number): Promise<BrowsedFact[]> {
    const query = Array.from(text.trim()).slice(0, MAX_SEARCH_CHARS).join("");
    if (query === "") throw badRequest("q: type something to search for");
    return withTenant(this.#db, tenantId, (trx) => searchFacts(trx, query, limit));
  }

  /** Everything remembered about a person (GDPR access), audited; not_found for an unknown person. */
  async exportPerson(tenantId: TenantId, personId: string, by: Actor): Promise<PersonExport> {
    const id = personIdOrNotFound(personId);
    return withTenant(this.#db, tenantId, async (trx) => {
      const exported = await exportPersonData(trx, id);
      await auditLog.recordBy(trx, tenantId, by, "memory.export", id);
      return exported;
    });
  }

  /** Erases every fact about a person (as `memory forget-all`); returns the count. */
  async forgetPerson(tenantId: TenantId, personId: string, by: Actor): Promise<number> {
    const id = personIdOrNotFound(personId);
    return withTenant(this.#db, tenantId, async (trx) => {
      if ((await getPerson(trx, id)) === undefined) throw notFound("person");
      const count = await deleteFactsOfPerson(trx, id);
      await auditLog.recordBy(trx, tenantId, by, "memory.forget_all", id, { facts: count });
      return count;
    });
  }
}
