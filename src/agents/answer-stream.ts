import type { EventId, MatrixUserId, RoomId } from "../shared/ids.ts";
import type { ChatGateway, OutgoingMessage } from "./ports.ts";

/**
 * Where a turn writes its answer as the model produces it: streamed into
 * the room (AnswerStream) or delivered whole (BridgedAnswer). Calls must not
 * overlap, except that append's promise need not be awaited.
 */
export interface AnswerWriter {
  /** Everything appended so far. */
  readonly text: string;
  /** Adds model output; never rejects (a failed update is thrown by finish). */
  append(delta: string): Promise<void>;
  /** Shows the complete answer; resolves to the event id the turn records as its reply. */
  finish(): Promise<EventId>;
  /** Ends the answer with a notice of what went wrong, keeping any text already written. */
  fail(notice: string): Promise<EventId>;
}

/** Shown after the text while the answer is still being written. */
const IN_PROGRESS_MARK = " …";

export interface AnswerStreamOptions {
  readonly chat: ChatGateway;
  readonly sender: MatrixUserId;
  readonly roomId: RoomId;
  readonly threadRootId: EventId | null;
  readonly replyTo: EventId | null;
  /** Base of the idempotency keys of every send and edit of this answer. */
  readonly idempotencyKey: string;
  /** The reply posted by an earlier, interrupted run of the same turn. */
  readonly existingEventId: EventId | null;
  /**
   * An earlier run of the turn may have posted without recording the id (a
   * crash between the send and onPosted). The homeserver answers the same
   * transaction id with that post, which shows the earlier run's text, so
   * the first post is followed by an edit to this run's text.
   */
  readonly mayHavePosted?: boolean;
  readonly editThrottleMs: number;
  /** Renders markdown to HTML for the formatted body. */
  readonly render: (markdown: string) => string;
  /** Called once when the first message is posted, to record its id before anything else. */
  readonly onPosted: (eventId: EventId) => Promise<void>;
  readonly now?: () => number;
}

/**
 * Streams a growing answer into a room as one message plus throttled edits
 * (m.replace), so readers see progress without a flood of events. Short
 * answers that finish within the first throttle window are a single message.
 * Calls must not overlap (the turn awaits each one).
 */
export class AnswerStream implements AnswerWriter {
  readonly #options: AnswerStreamOptions;
  readonly #now: () => number;
  readonly #startedAt: number;
  #text = "";
  #eventId: EventId | null;
  #lastFlushAt = 0;
  #shownText: string | null = null;
  #edits = 0;
  /** The background update started by append(), if any. */
  #pending: Promise<void> = Promise.resolve();
  #updating = false;
  #error: Error | undefined = undefined;

  constructor(options: AnswerStreamOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#eventId = options.existingEventId;
  }

  get text(): string {
    return this.#text;
  }

  get eventId(): EventId | null {
    return this.#eventId;
  }

  /**
   * Adds text and, when the throttle allows and no update is in flight,
   * starts posting or editing in the background. The returned promise
   * settles when that update is done; callers reading a model stream need
   * not wait for it (a slow homeserver must not stall or time out the
   * model), and it never rejects: an update's failure is thrown by finish().
   */
  append(delta: string): Promise<void> {
    this.#text += delta;
    const now = this.#now();
    const since = this.#eventId === null ? now - this.#startedAt : now - this.#lastFlushAt;
    if (this.#updating || since < this.#options.editThrottleMs || this.#text.trim() === "")
      return this.#pending;
    this.#updating = true;
    this.#pending = this.#show(this.#text + IN_PROGRESS_MARK, "progress").then(
      () => {
        this.#updating = false;
      },
      (error: unknown) => {
        this.#updating = false;
        this.#error ??= error instanceof Error ? error : new Error(String(error));
      },
    );
    return this.#pending;
  }

  /** Shows the complete answer once any update in flight is done; returns the reply's event id. */
  async finish(): Promise<EventId> {
    await this.#settle();
    const text = this.#text.trim() === "" ? "(no answer)" : this.#text;
    return this.#show(text, "final");
  }

  /** Ends the answer with a notice of what went wrong, keeping any text already written. */
  async fail(notice: string): Promise<EventId> {
    await this.#pending;
    this.#error = undefined;
    const text = this.#text.trim() === "" ? `⚠️ ${notice}` : `${this.#text}\n\n⚠️ ${notice}`;
    return this.#show(text, "final", this.#text.trim() === "" ? "m.notice" : "m.text");
  }

  async #settle(): Promise<void> {
    await this.#pending;
    if (this.#error !== undefined) throw this.#error;
  }

  async #show(
    text: string,
    phase: "progress" | "final",
    msgtype: OutgoingMessage["msgtype"] = "m.text",
  ): Promise<EventId> {
    this.#lastFlushAt = this.#now();
    if (text === this.#shownText && this.#eventId !== null) return this.#eventId;
    const { chat, sender, roomId, threadRootId, replyTo, idempotencyKey, render } = this.#options;
    const message: OutgoingMessage = {
      msgtype,
      body: text,
      html: render(text),
      threadRootId,
      replyTo,
    };
    if (this.#eventId === null) {
      this.#eventId = await chat.send(sender, roomId, message, `${idempotencyKey}/post`);
      await this.#options.onPosted(this.#eventId);
      if (this.#options.mayHavePosted !== true) {
        this.#shownText = text;
        return this.#eventId;
      }
    }
    this.#edits += 1;
    const key =
      phase === "final" ? `${idempotencyKey}/final` : `${idempotencyKey}/edit/${this.#edits}`;
    await chat.edit(sender, roomId, this.#eventId, message, key);
    this.#shownText = text;
    return this.#eventId;
  }
}
