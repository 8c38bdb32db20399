import type { Knex } from "knex";
import { describeError } from "../shared/errors.ts";
import { isUuid, type TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import { stripeEvents, subscriptionDirectory, type StoredEvent } from "./repository.ts";
import type { SubscriptionSync, SyncOutcome } from "./sync.ts";
import { BillingGatewayError, type StripeGateway, type SubscriptionSnapshot } from "./types.ts";

/** The event types we act on; any other verified event is stored as ignored. */
export const HANDLED_EVENT_TYPES: ReadonlySet<string> = new Set([
  "checkout.session.completed",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.deleted",
  "customer.subscription.trial_will_end",
  "customer.subscription.paused",
  "customer.subscription.resumed",
  "invoice.paid",
  "invoice.payment_failed",
  "invoice.payment_action_required",
]);

/** How long one processor holds an event before another may take it (a crash's claim runs out). */
const EVENT_LEASE_MS = 120_000;
const RETRY_BASE_MS = 2_000;
const RETRY_MAX_MS = 3_600_000;
/** After this many attempts (about a day of backoff) an event is marked failed for an operator. */
export const MAX_EVENT_ATTEMPTS = 30;
/** A drain stops after this many events and lets the timer continue (keeps one pass bounded). */
const EVENTS_PER_DRAIN = 500;

/**
 * Drains stored webhook events: claims each pending one, re-reads from
 * Stripe what it is about (never trusting the payload or the order of
 * arrival) and hands the subscription to SubscriptionSync. A failure leaves
 * the event pending with exponential backoff; events survive restarts
 * because they are rows. Runs after each webhook (in-process, after the
 * response) and on the portal's timer. One drain at a time per process;
 * several processes share the work through claims.
 */
export class EventProcessor {
  readonly #db: Knex;
  readonly #gateway: StripeGateway;
  readonly #sync: SubscriptionSync;
  readonly #log: Logger;
  #draining: Promise<number> | undefined;
  #again = false;

  constructor(deps: { db: Knex; gateway: StripeGateway; sync: SubscriptionSync; log: Logger }) {
    this.#db = deps.db;
    this.#gateway = deps.gateway;
    this.#sync = deps.sync;
    this.#log = deps.log.child({ module: "billing-events" });
  }

  /** Starts a drain soon (or another one after the current); never throws. */
  kick(): void {
    if (this.#draining !== undefined) {
      this.#again = true;
      return;
    }
    setImmediate(() => void this.drain());
  }

  /** Processes every due pending event; resolves to how many were handled. */
  async drain(): Promise<number> {
    if (this.#draining !== undefined) {
      this.#again = true;
      return this.#draining;
    }
    this.#draining = this.#drainLoop().finally(() => {
      this.#draining = undefined;
    });
    return this.#draining;
  }

  async #drainLoop(): Promise<number> {
    let handled = 0;
    do {
      for (let n = 0; n < EVENTS_PER_DRAIN; n += 1) {
        let event: StoredEvent | undefined;
        try {
          event = await stripeEvents.claimNext(this.#db, EVENT_LEASE_MS);
        } catch (error) {
          this.#log.warn({ err: describeError(error) }, "could not claim a Stripe event");
          return handled;
        }
        if (event === undefined) break;
        await this.#process(event);
        handled += 1;
      }
    } while (this.#takeAgain());
    return handled;
  }

  /** Whether a kick arrived during the pass (then another pass runs); resets it. */
  #takeAgain(): boolean {
    const again = this.#again;
    this.#again = false;
    return again;
  }

  async #process(event: StoredEvent): Promise<void> {
    const fields = { eventId: event.id, type: event.type, attempt: event.attempts };
    try {
      const outcome = await this.#handle(event);
      await stripeEvents.finish(
        this.#db,
        event.id,
        outcome.outcome,
        outcome.outcome === "ignored" ? outcome.reason : null,
      );
      if (outcome.outcome === "ignored")
        this.#log.info({ ...fields, reason: outcome.reason }, "Stripe event ignored");
    } catch (error) {
      const message = describeError(error);
      const permanent = error instanceof BillingGatewayError && !error.retryable;
      if (permanent || event.attempts >= MAX_EVENT_ATTEMPTS) {
        this.#log.error({ ...fields, err: message }, "Stripe event failed for good");
        await stripeEvents.finish(this.#db, event.id, "failed", message).catch(() => undefined);
        return;
      }
      const delayMs = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (event.attempts - 1));
      this.#log.warn(
        { ...fields, err: message, retryInMs: delayMs },
        "Stripe event will be retried",
      );
      await stripeEvents.retryLater(this.#db, event.id, delayMs, message).catch(() => undefined);
    }
  }

  /** Finds the subscription (re-read from Stripe) and its tenant, then syncs. */
  async #handle(event: StoredEvent): Promise<SyncOutcome> {
    let subscriptionId = event.subscriptionId;
    let tenantHint: string | null = null;
    if (event.type === "checkout.session.completed") {
      if (event.objectId === null) return { outcome: "ignored", reason: "no session id" };
      const session = await this.#gateway.retrieveCheckoutSession(event.objectId);
      if (session === null) return { outcome: "ignored", reason: "Stripe has no such session" };
      subscriptionId = session.subscriptionId;
      tenantHint = session.clientReferenceId;
    }
    if (subscriptionId === null)
      return { outcome: "ignored", reason: "the event names no subscription" };
    const snapshot = await this.#gateway.retrieveSubscription(subscriptionId);
    if (snapshot === null) return { outcome: "ignored", reason: "Stripe has no such subscription" };
    const tenantId = await this.#tenantOf(snapshot, tenantHint);
    if (tenantId === undefined)
      return { outcome: "ignored", reason: `no tenant for subscription ${snapshot.id}` };
    return this.#sync.apply(tenantId, snapshot);
  }

  /**
   * The tenant a subscription belongs to: the customer we created for it
   * (our own record) first, then the tenant id we wrote into the checkout
   * (client_reference_id, subscription metadata) if that tenant exists.
   */
  async #tenantOf(
    snapshot: SubscriptionSnapshot,
    hint: string | null,
  ): Promise<TenantId | undefined> {
    const known = await subscriptionDirectory.tenantOf(this.#db, {
      customerId: snapshot.customerId,
      subscriptionId: snapshot.id,
    });
    if (known !== undefined) return known;
    for (const candidate of [hint, snapshot.tenantIdHint]) {
      if (candidate === null || !isUuid(candidate)) continue;
      const exists = (await this.#db("tenants").where({ id: candidate }).first("id")) as
        { id: string } | undefined;
      if (exists !== undefined) return candidate as TenantId;
    }
    return undefined;
  }
}
