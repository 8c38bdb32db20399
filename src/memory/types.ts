import type { AgentId, EventId, FactId, MatrixUserId, PersonId, RoomId } from "../shared/ids.ts";

/** The network a Matrix user comes from, told by the ghost namespace of the bridges. */
export type Platform = "matrix" | "slack" | "discord" | "telegram";

/** What a fact is about. */
export type FactSubject =
  | { readonly kind: "person"; readonly personId: PersonId }
  | { readonly kind: "room"; readonly roomId: RoomId }
  | { readonly kind: "tenant" };

/** How a fact came to be known. */
export type FactSource = "explicit" | "tool" | "extraction" | "admin";

export interface Fact {
  readonly id: FactId;
  /** The agent whose private memory holds the fact; null when shared by the tenant's agents. */
  readonly agentId: AgentId | null;
  readonly subject: FactSubject;
  readonly key: string | null;
  readonly content: string;
  readonly source: FactSource;
  readonly sourceEventId: EventId | null;
  readonly sourceRoomId: RoomId | null;
  readonly validFrom: Date;
  /** Null while the fact holds; set when forgotten or superseded. */
  readonly validTo: Date | null;
  readonly supersededBy: FactId | null;
}

export interface NewFact {
  readonly agentId: AgentId | null;
  readonly subject: FactSubject;
  /**
   * Normalised attribute the fact sets ("favourite colour"). A current fact
   * with the same subject, key and visibility is superseded by the new one
   * (kept, with valid_to and superseded_by set), never silently deleted.
   */
  readonly key?: string | null;
  readonly content: string;
  readonly source: FactSource;
  readonly sourceEventId?: EventId | null;
  readonly sourceRoomId?: RoomId | null;
}

export interface FactQuery {
  /** The asking agent: it sees shared facts and its own private ones, never another agent's. */
  readonly agentId: AgentId;
  /** The person(s) in the conversation; facts about them rank first. */
  readonly personIds: readonly PersonId[];
  /**
   * When true, facts about people other than `personIds` are never returned
   * (facts about the room and the tenant still are), and they take no
   * candidate slots. Default false: "who here plays jazz?" finds colleagues.
   */
  readonly onlyThesePeople?: boolean | undefined;
  readonly roomId: RoomId | null;
  /** The text to match (usually the message being answered). */
  readonly text: string;
  readonly limit: number;
  /** Approximate token budget for the returned facts' content (chars/4). */
  readonly tokenBudget: number;
}

export interface HistoryMessage {
  readonly eventId: EventId;
  readonly sender: MatrixUserId;
  readonly personId: PersonId | null;
  readonly agentId: AgentId | null;
  readonly platform: Platform;
  readonly body: string;
  readonly threadRootId: EventId | null;
  readonly sentAt: Date;
}
