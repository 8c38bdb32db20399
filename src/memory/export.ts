import type { Knex } from "knex";
import { notFound } from "../shared/errors.ts";
import type { PersonId } from "../shared/ids.ts";
import { allFactsAbout } from "./facts.ts";
import { historyOfPerson } from "./history.ts";
import { getPerson, identitiesOf } from "./people.ts";
import type { Fact } from "./types.ts";

/** What a person can learn the service holds about them (GDPR access request). Plain JSON. */
export interface PersonExport {
  readonly exportedAt: string;
  readonly person: {
    readonly id: string;
    readonly displayName: string | null;
    readonly createdAt: string;
  };
  readonly identities: readonly {
    readonly userId: string;
    readonly platform: string;
    readonly linkedAt: string;
  }[];
  /** Current and past facts, newest first, each with where it came from and when it held. */
  readonly facts: readonly ExportedFact[];
  /** Messages recorded from the person, oldest first. */
  readonly messages: readonly ExportedMessage[];
}

export interface ExportedFact {
  readonly id: string;
  readonly content: string;
  readonly key: string | null;
  /** "shared" (all the tenant's agents) or the id of the one agent that holds it. */
  readonly visibility: string;
  /** How it was learned: explicit, tool, extraction or admin. */
  readonly source: string;
  /** The message it was learned from, and its room. */
  readonly sourceEventId: string | null;
  readonly sourceRoomId: string | null;
  readonly validFrom: string;
  readonly validTo: string | null;
  readonly supersededBy: string | null;
}

export interface ExportedMessage {
  readonly roomId: string;
  readonly threadRootId: string | null;
  readonly eventId: string;
  readonly sender: string;
  readonly platform: string;
  readonly body: string;
  readonly sentAt: string;
}

/**
 * Everything held about one person in the current tenant: identities, facts
 * about them (past ones included) with provenance, and their messages.
 * Throws not_found for a person this tenant does not have.
 */
export async function exportPersonData(
  trx: Knex.Transaction,
  personId: PersonId,
): Promise<PersonExport> {
  const person = await getPerson(trx, personId);
  if (person === undefined) throw notFound("person");
  const [identities, facts, messages] = [
    await identitiesOf(trx, personId),
    await allFactsAbout(trx, personId),
    await historyOfPerson(trx, personId),
  ];
  return {
    exportedAt: new Date().toISOString(),
    person: {
      id: person.id,
      displayName: person.displayName,
      createdAt: person.createdAt.toISOString(),
    },
    identities: identities.map((identity) => ({
      userId: identity.userId,
      platform: identity.platform,
      linkedAt: identity.linkedAt.toISOString(),
    })),
    facts: facts.map(exportFact),
    messages: messages.map((message) => ({
      roomId: message.roomId,
      threadRootId: message.threadRootId,
      eventId: message.eventId,
      sender: message.sender,
      platform: message.platform,
      body: message.body,
      sentAt: message.sentAt.toISOString(),
    })),
  };
}

function exportFact(fact: Fact): ExportedFact {
  return {
    id: fact.id,
    content: fact.content,
    key: fact.key,
    visibility: fact.agentId ?? "shared",
    source: fact.source,
    sourceEventId: fact.sourceEventId,
    sourceRoomId: fact.sourceRoomId,
    validFrom: fact.validFrom.toISOString(),
    validTo: fact.validTo?.toISOString() ?? null,
    supersededBy: fact.supersededBy,
  };
}
