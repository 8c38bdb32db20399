import type { Knex } from "knex";
import type { Actor } from "../audit/audit-log.ts";
import type { TenantId } from "../shared/ids.ts";

/**
 * Stripe subscription statuses as we mirror them; `none` until the tenant
 * has ever subscribed (it may already have a Stripe customer then).
 */
export type SubscriptionStatus =
  | "none"
  | "trialing"
  | "active"
  | "past_due"
  | "unpaid"
  | "canceled"
  | "paused"
  | "incomplete"
  | "incomplete_expired";

/** A subscription as Stripe says it is now (re-read, never taken from a webhook payload). */
export interface SubscriptionSnapshot {
  readonly id: string;
  readonly customerId: string;
  /** Stripe's status; an unknown future value is kept as text and treated as "no change". */
  readonly status: string;
  /** The price of the first item; null if the subscription has no items. */
  readonly priceId: string | null;
  readonly currentPeriodEnd: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  /** The tenant we put into the subscription's metadata at checkout, if any. */
  readonly tenantIdHint: string | null;
  readonly createdAt: Date;
}

/** A completed (or not) checkout session, re-read from Stripe. */
export interface CheckoutSessionSnapshot {
  readonly id: string;
  readonly clientReferenceId: string | null;
  readonly customerId: string | null;
  readonly subscriptionId: string | null;
  readonly status: string;
}

/** What a verified webhook carries that we keep: ids only, the rest is re-read. */
export interface VerifiedEvent {
  readonly id: string;
  readonly type: string;
  /** The id of data.object (a subscription, checkout session or invoice). */
  readonly objectId: string | null;
  /** The subscription the payload names, if any (a hint for which one to re-read). */
  readonly subscriptionId: string | null;
}

/**
 * Everything Switchboard asks of Stripe; src/billing/stripe-gateway.ts
 * implements it with the `stripe` SDK. Every POST carries an idempotency key
 * derived from what the request means, so a retry (ours or the SDK's) never
 * creates a second customer, session or meter event. Calls time out
 * (STRIPE_TIMEOUT_MS) and reject with a BillingGatewayError; none is ever
 * made inside a database transaction.
 */
export interface StripeGateway {
  /** Creates the tenant's Stripe customer; the same idempotency key returns the same customer. */
  createCustomer(input: {
    readonly tenantId: TenantId;
    readonly name: string;
    readonly email: string | null;
    readonly idempotencyKey: string;
  }): Promise<{ readonly customerId: string }>;

  /** A subscription-mode Checkout session for one price; resolves to Stripe's hosted page. */
  createCheckout(input: {
    readonly tenantId: TenantId;
    readonly customerId: string;
    readonly priceId: string;
    readonly trialDays: number;
    readonly successUrl: string;
    readonly cancelUrl: string;
    readonly idempotencyKey: string;
  }): Promise<{ readonly sessionId: string; readonly url: string }>;

  /** A customer portal session (payment methods, invoices, plan changes, cancellation). */
  createPortalSession(input: {
    readonly customerId: string;
    readonly returnUrl: string;
    readonly idempotencyKey: string;
  }): Promise<{ readonly url: string }>;

  /** The subscription as it is now; null when Stripe has no such subscription. */
  retrieveSubscription(subscriptionId: string): Promise<SubscriptionSnapshot | null>;

  /** The checkout session as it is now; null when Stripe has no such session. */
  retrieveCheckoutSession(sessionId: string): Promise<CheckoutSessionSnapshot | null>;

  /**
   * Reports usage to the Billing Meter. `identifier` makes it count once:
   * Stripe rejects a second event with the same identifier, and this
   * resolves `duplicate` then (the usage is already recorded).
   */
  reportMeterEvent(input: {
    readonly eventName: string;
    readonly customerId: string;
    readonly value: number;
    readonly identifier: string;
    readonly timestamp: Date;
  }): Promise<"recorded" | "duplicate">;

  /**
   * Checks the Stripe-Signature header against the raw body (webhook
   * secret, timestamp tolerance) and parses the event. Throws a
   * WebhookRejected for a missing or bad signature, a stale timestamp or a
   * payload that is not an event.
   */
  verifyWebhook(rawBody: Buffer, signatureHeader: string | undefined): Promise<VerifiedEvent>;
}

/** A webhook we refuse (answered with 400; nothing is written). */
export class WebhookRejected extends Error {
  override readonly name = "WebhookRejected";
}

/** Stripe failed or could not be reached; `retryable` when trying again may help. */
export class BillingGatewayError extends Error {
  override readonly name = "BillingGatewayError";
  readonly retryable: boolean;
  readonly stripeCode: string | undefined;

  constructor(message: string, options: { retryable: boolean; code?: string | undefined }) {
    super(message);
    this.retryable = options.retryable;
    this.stripeCode = options.code;
  }
}

/**
 * Suspension for billing reasons (implemented by src/tenants/holds.ts).
 * Both run in the caller's transaction, recompute the tenant's status there,
 * and are no-ops (false) when nothing changes.
 */
export interface BillingHolds {
  place(trx: Knex.Transaction, tenantId: TenantId, reason: "billing", by: Actor): Promise<boolean>;
  lift(trx: Knex.Transaction, tenantId: TenantId, reason: "billing", by: Actor): Promise<boolean>;
}

/**
 * Moving a tenant to another plan (implemented by src/tenants/plan-changes.ts):
 * sets the plan, pauses agents beyond a smaller plan's limit and tells the
 * owners. Its own transaction; callers call it after theirs commit.
 */
export interface PlanChanger {
  apply(
    tenantId: TenantId,
    planId: string,
    by: Actor,
  ): Promise<{ readonly pausedAgents: readonly unknown[] }>;
}

/** Who billing changes are recorded as in the audit log. */
export const STRIPE_ACTOR: Actor = { id: "stripe", via: "api" };
