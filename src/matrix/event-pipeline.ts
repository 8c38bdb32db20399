import { setTimeout as sleep } from "node:timers/promises";
import type { Knex } from "knex";
import type { Conversations } from "../agents/conversation.ts";
import { isDatabaseUnavailable } from "../db/unavailable.ts";
import { describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { parseEvent } from "./events.ts";
import {
  acceptTransaction,
  markEvent,
  pendingEvents,
  type AcceptedTransaction,
  type InboxEvent,
} from "./inbox.ts";
import type { RuntimeMetrics } from "./metrics.ts";
import { KeyedSerialQueue } from "./room-queue.ts";
import type { ServedTenant, TenantRegistry } from "./tenant-registry.ts";

/** Attempts for one event before it is set aside as failed (an error that is not an outage). */
const MAX_EVENT_ATTEMPTS = 5;
const RETRY_BASE_DELAY_MS = 500;
const RETRY_MAX_DELAY_MS = 15_000;

/** Node and undici codes of a connection that could not be made or broke. */
const CONNECTION_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * The database or the homeserver is unreachable (down, restarting): waiting
 * is the fix, so such failures do not use up an event's attempts; a message
 * that arrived just before a restart is answered once it is over, however
 * long it takes. Model failures never get here (the turn ends with a notice).
 */
function isOutage(error: unknown): boolean {
  if (isDatabaseUnavailable(error)) return true;
  if (typeof error !== "object" || error === null) return false;
  const status = (error as { statusCode?: unknown }).statusCode;
  if (status === 502 || status === 503 || status === 504) return true;
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 3; depth++) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string" && CONNECTION_ERROR_CODES.has(code)) return true;
    cause = cause.cause;
  }
  return false;
}

/**
 * From transaction to answer: events are stored in the inbox before the
 * homeserver is acknowledged, then handled one at a time per room, in order,
 * with retries; pending events are picked up again after a restart.
 */
export class EventPipeline {
  readonly #db: Knex;
  readonly #registry: TenantRegistry;
  readonly #conversations: Conversations;
  readonly #metrics: RuntimeMetrics;
  readonly #log: Logger;
  readonly #maxBodyChars: number;
  readonly #queue: KeyedSerialQueue;
  /** Inbox rows queued in this process, so recovery never queues one twice. */
  readonly #queued = new Set<string>();
  #stopping = false;

  constructor(deps: {
    db: Knex;
    registry: TenantRegistry;
    conversations: Conversations;
    metrics: RuntimeMetrics;
    log: Logger;
    maxBodyChars: number;
  }) {
    this.#db = deps.db;
    this.#registry = deps.registry;
    this.#conversations = deps.conversations;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#maxBodyChars = deps.maxBodyChars;
    this.#queue = new KeyedSerialQueue((error, key) => {
      this.#log.error({ err: error, key }, "room queue task failed");
    });
  }

  /** Stores a transaction (the caller acknowledges the homeserver after this resolves) and queues its events. */
  async accept(
    served: ServedTenant,
    txnId: string,
    events: readonly unknown[],
  ): Promise<AcceptedTransaction> {
    const result = await acceptTransaction(this.#db, served.homeserver.tenantId, txnId, events);
    this.#metrics.transactions.inc({ outcome: result.duplicate ? "duplicate" : "accepted" });
    this.#metrics.events.inc(result.accepted.length);
    if (result.rejected > 0)
      this.#log.warn(
        { tenantId: served.homeserver.tenantId, txnId, rejected: result.rejected },
        "dropped malformed entries of a transaction",
      );
    for (const item of result.accepted) this.#enqueue(served, item);
    return result;
  }

  /** Queues every pending inbox event of every served tenant (after a restart). */
  async recover(): Promise<number> {
    let count = 0;
    for (const served of this.#registry.all()) {
      for (const item of await pendingEvents(this.#db, served.homeserver.tenantId)) {
        this.#enqueue(served, item);
        count++;
      }
    }
    return count;
  }

  /** Stops taking new work and waits for queued work to finish. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#queue.drain();
  }

  async drain(): Promise<void> {
    await this.#queue.drain();
  }

  #enqueue(served: ServedTenant, item: InboxEvent): void {
    const id = `${item.tenantId}/${item.seq}`;
    if (this.#queued.has(id)) return;
    this.#queued.add(id);
    this.#queue.push(`${item.tenantId}/${item.roomId}`, async () => {
      try {
        await this.#handleWithRetries(served, item);
      } finally {
        this.#queued.delete(id);
      }
    });
  }

  async #handleWithRetries(served: ServedTenant, item: InboxEvent): Promise<void> {
    const log = this.#log.child({
      tenantId: item.tenantId,
      eventId: item.eventId,
      roomId: item.roomId,
    });
    const stopTimer = this.#metrics.handleSeconds.startTimer();
    let attempt = item.attempts;
    for (let tries = 1; ; tries++) {
      if (this.#stopping) return;
      try {
        const outcome = await this.#handle(served, item);
        await markEvent(this.#db, item.tenantId, item.seq, {
          status: "done",
          ...(outcome === undefined ? {} : { error: outcome }),
        });
        this.#metrics.handled.inc({ outcome: outcome === undefined ? "handled" : "ignored" });
        stopTimer();
        return;
      } catch (error) {
        const outage = isOutage(error);
        if (!outage) attempt++;
        if (attempt >= MAX_EVENT_ATTEMPTS) {
          log.error({ err: error, attempt }, "event failed; giving up on it");
          await markEvent(this.#db, item.tenantId, item.seq, {
            status: "failed",
            error: describeError(error).slice(0, 1000),
          }).catch((markError: unknown) => {
            log.error({ err: markError }, "could not record the failed event; it stays pending");
          });
          this.#metrics.handled.inc({ outcome: "failed" });
          return;
        }
        const delayMs = Math.min(RETRY_BASE_DELAY_MS * 2 ** (tries - 1), RETRY_MAX_DELAY_MS);
        log.warn(
          { err: describeError(error), attempt, tries, outage, delayMs },
          outage
            ? "event handling waits for the database or homeserver; retrying"
            : "event handling failed; retrying",
        );
        await sleep(delayMs);
      }
    }
  }

  /** Handles one event; returns a reason when it was deliberately ignored. */
  async #handle(served: ServedTenant, item: InboxEvent): Promise<string | undefined> {
    const parsed = parseEvent(item.event, this.#maxBodyChars);
    if (parsed.kind === "ignored") return parsed.reason;
    const context = await this.#registry.context(served);
    if (context === undefined) return "tenant no longer exists";
    if (parsed.kind === "message") {
      await this.#conversations.handleMessage(context, parsed.message);
      const { sender } = parsed.message;
      if (
        sender !== served.botUserId &&
        sender !== served.relayUserId &&
        !served.appservice.isNamespacedUser(sender)
      ) {
        served.activity.record(sender, false);
        this.#metrics.activeUsers.set(
          { tenant: served.homeserver.tenantId },
          served.activity.activeUsers,
        );
      }
    } else if (parsed.kind === "invite")
      await this.#conversations.handleInvite(context, parsed.invite);
    else await this.#conversations.handleMembership(context, parsed.change);
    return undefined;
  }
}
