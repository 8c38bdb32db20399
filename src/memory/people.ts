import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { BRIDGE_NETWORKS, NETWORKS } from "../bridges/networks.ts";
import { AppError } from "../shared/errors.ts";
import type { MatrixUserId, PersonId } from "../shared/ids.ts";
import { CURRENT_TENANT_SQL, reassignFactsOfPerson } from "./facts.ts";
import { reassignHistoryOfPerson, reassignHistoryOfSender } from "./history.ts";
import type { Platform } from "./types.ts";

/**
 * The people repository: one person per human, owning one or more Matrix
 * IDs (their own account and their bridged ghosts). Runs inside the caller's
 * tenant transaction.
 */

export type BridgedPlatform = Exclude<Platform, "matrix">;
/** Localpart prefix of each bridge's ghost users, e.g. `slack_` for `@slack_U123:example.org`. */
export type GhostPrefixes = Readonly<Partial<Record<BridgedPlatform, string>>>;

/** The bridges' `username_template` prefixes, as the network descriptors define them. */
export const DEFAULT_GHOST_PREFIXES: Readonly<Record<BridgedPlatform, string>> = Object.freeze(
  Object.fromEntries(
    BRIDGE_NETWORKS.map((network) => [network, NETWORKS[network].ghostPrefix]),
  ) as Record<BridgedPlatform, string>,
);

/** Longest display name kept, in characters. */
const MAX_DISPLAY_NAME_CHARS = 255;

export interface Person {
  readonly id: PersonId;
  readonly displayName: string | null;
  readonly createdAt: Date;
}

export interface Identity {
  readonly userId: MatrixUserId;
  readonly platform: Platform;
  readonly linkedAt: Date;
}

/**
 * The network a user comes from, told by the bridges' ghost namespaces
 * (`ghostPrefixes` override the defaults); everyone else is on Matrix.
 */
export function platformOfUserId(
  userId: MatrixUserId,
  ghostPrefixes: GhostPrefixes = {},
): Platform {
  const colon = userId.indexOf(":");
  const localpart = userId.slice(1, colon === -1 ? undefined : colon);
  const prefixes = { ...DEFAULT_GHOST_PREFIXES, ...ghostPrefixes };
  for (const platform of BRIDGE_NETWORKS) {
    const prefix = prefixes[platform];
    if (prefix !== "" && localpart.startsWith(prefix)) return platform;
  }
  return "matrix";
}

/**
 * The person who owns `userId`, created on first sight. Safe under
 * concurrency: two transactions resolving a new user at once end with one
 * person (the identity insert decides; the loser discards its draft person).
 * A given display name replaces the stored one.
 */
export async function resolvePerson(
  trx: Knex.Transaction,
  userId: MatrixUserId,
  platform: Platform,
  displayName?: string,
): Promise<PersonId> {
  const name = displayName === undefined ? undefined : cleanDisplayName(displayName);
  const existing = await personIdOf(trx, userId);
  if (existing !== undefined) {
    if (name !== undefined && name !== null) {
      await trx("people")
        .where("id", existing)
        .whereRaw("display_name is distinct from ?", [name])
        .update({ display_name: name });
    }
    return existing;
  }

  const draft = randomUUID() as PersonId;
  await trx("people").insert({
    id: draft,
    tenant_id: trx.raw(CURRENT_TENANT_SQL),
    display_name: name ?? null,
  });
  const inserted = await trx("person_identities")
    .insert({ tenant_id: trx.raw(CURRENT_TENANT_SQL), user_id: userId, person_id: draft, platform })
    .onConflict(["tenant_id", "user_id"])
    .ignore()
    .returning("person_id");
  if (inserted.length > 0) return draft;

  // Another transaction registered this user first (and has committed, or the insert would still wait).
  await trx("people").where("id", draft).delete();
  const winner = await personIdOf(trx, userId);
  if (winner === undefined)
    throw new AppError("internal", "person identity vanished while resolving");
  return winner;
}

/**
 * Makes both Matrix IDs one person and returns it. When they belonged to two
 * people, the older person survives and takes over the other's identities,
 * facts (current ones reconciled: per key, the newest wins) and history;
 * the other person is deleted. IDs never seen before get a person first.
 * Linking IDs that are already one person changes nothing.
 */
export async function linkIdentities(
  trx: Knex.Transaction,
  userIdA: MatrixUserId,
  userIdB: MatrixUserId,
  ghostPrefixes: GhostPrefixes = {},
): Promise<PersonId> {
  await lockIdentityChanges(trx);
  const a = await resolvePerson(trx, userIdA, platformOfUserId(userIdA, ghostPrefixes));
  const b = await resolvePerson(trx, userIdB, platformOfUserId(userIdB, ghostPrefixes));
  if (a === b) return a;

  const [survivor, merged] = await trx("people")
    .select<{ id: PersonId; display_name: string | null }[]>("id", "display_name")
    .whereIn("id", [a, b])
    .orderBy([
      { column: "created_at", order: "asc" },
      { column: "id", order: "asc" },
    ]);
  if (survivor === undefined || merged === undefined) {
    throw new AppError("internal", "a person vanished while linking");
  }
  await trx("person_identities").where("person_id", merged.id).update({ person_id: survivor.id });
  await reassignFactsOfPerson(trx, merged.id, survivor.id);
  await reassignHistoryOfPerson(trx, merged.id, survivor.id);
  if (survivor.display_name === null && merged.display_name !== null) {
    await trx("people").where("id", survivor.id).update({ display_name: merged.display_name });
  }
  await trx("people").where("id", merged.id).delete();
  return survivor.id;
}

/**
 * Splits `userId` off into a person of its own and returns that person. The
 * facts stay with the original person; the messages this ID sent move with
 * it. An ID that is its person's only identity is already on its own.
 */
export async function unlinkIdentity(
  trx: Knex.Transaction,
  userId: MatrixUserId,
): Promise<PersonId> {
  await lockIdentityChanges(trx);
  const current = await personIdOf(trx, userId);
  if (current === undefined) return resolvePerson(trx, userId, platformOfUserId(userId));
  const identities = await trx("person_identities")
    .where("person_id", current)
    .count<{ count: number | string }[]>({ count: "*" });
  if (Number(identities[0]?.count ?? 0) <= 1) return current;

  const own = randomUUID() as PersonId;
  await trx("people").insert({ id: own, tenant_id: trx.raw(CURRENT_TENANT_SQL) });
  await trx("person_identities")
    .where({ user_id: userId, person_id: current })
    .update({ person_id: own });
  await reassignHistoryOfSender(trx, userId, current, own);
  return own;
}

/** The person's Matrix IDs, oldest link first. */
export async function identitiesOf(trx: Knex.Transaction, personId: PersonId): Promise<Identity[]> {
  const rows = await trx("person_identities")
    .select<{ user_id: string; platform: Platform; created_at: Date | string }[]>(
      "user_id",
      "platform",
      "created_at",
    )
    .where("person_id", personId)
    .orderBy([
      { column: "created_at", order: "asc" },
      { column: "user_id", order: "asc" },
    ]);
  return rows.map((row) => ({
    userId: row.user_id as MatrixUserId,
    platform: row.platform,
    linkedAt: new Date(row.created_at),
  }));
}

/**
 * The people behind the given Matrix IDs (distinct; IDs never seen are
 * skipped, nothing is created). Used to tell retrieval who is talking.
 */
export async function personIdsFor(
  trx: Knex.Transaction,
  userIds: MatrixUserId | readonly MatrixUserId[],
): Promise<PersonId[]> {
  const ids = typeof userIds === "string" ? [userIds] : [...userIds];
  if (ids.length === 0) return [];
  const rows = await trx("person_identities")
    .distinct<{ person_id: PersonId }[]>("person_id")
    .whereIn("user_id", ids)
    .orderBy("person_id");
  return rows.map((row) => row.person_id);
}

export async function getPerson(
  trx: Knex.Transaction,
  personId: PersonId,
): Promise<Person | undefined> {
  const row = await trx("people")
    .first<{ id: string; display_name: string | null; created_at: Date | string } | undefined>(
      "id",
      "display_name",
      "created_at",
    )
    .where("id", personId);
  if (row === undefined) return undefined;
  return {
    id: row.id as PersonId,
    displayName: row.display_name,
    createdAt: new Date(row.created_at),
  };
}

/**
 * Erasure (GDPR): deletes the person and their identities and facts (by
 * cascade); their messages stay, without the person. Delete the history
 * first (deleteHistoryOfPerson) when it must go too. Returns whether it existed.
 */
export async function deletePerson(trx: Knex.Transaction, personId: PersonId): Promise<boolean> {
  // Counted through RETURNING: knex-pglite answers a plain delete with the raw result, not a count.
  const deleted = await trx("people").where("id", personId).delete(["id"]);
  return deleted.length > 0;
}

/**
 * Serialises links and unlinks within the tenant until the transaction ends.
 * They are rare admin actions; done one at a time, crossing links (A+B while
 * B+C) cannot deadlock or merge into a person another link just deleted.
 */
async function lockIdentityChanges(trx: Knex.Transaction): Promise<void> {
  await trx.raw(
    "select pg_advisory_xact_lock(hashtextextended(current_setting('app.tenant_id', true) || '|identities', 0))",
  );
}

async function personIdOf(
  trx: Knex.Transaction,
  userId: MatrixUserId,
): Promise<PersonId | undefined> {
  const row = await trx("person_identities")
    .first<{ person_id: PersonId } | undefined>("person_id")
    .where("user_id", userId);
  return row?.person_id;
}

function cleanDisplayName(name: string): string | null {
  const clean = Array.from(
    name
      .replace(/[\p{Cc}\p{Cf}]/gu, " ")
      .replace(/\s+/gu, " ")
      .trim(),
  )
    .slice(0, MAX_DISPLAY_NAME_CHARS)
    .join("")
    .trim();
  return clean === "" ? null : clean;
}
