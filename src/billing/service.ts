import type { Knex } from "knex";
import type { Plan } from "../config/plans.ts";
import type { Config } from "../config/schema.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { AppError, badRequest, conflict } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";
import type { Tenant } from "../tenants/types.ts";
import { Metering } from "./metering.ts";
import type { BillingNotices } from "./notices.ts";
import { EventProcessor, HANDLED_EVENT_TYPES } from "./processor.ts";
import { stripeEvents, subscriptionRepository, type SubscriptionRecord } from "./repository.ts";
import { SubscriptionSync } from "./sync.ts";
import {
  BillingGatewayError,
  type BillingHolds,
  type PlanChanger,
  type StripeGateway,
} from "./types.ts";

/** Repeated clicks within this window get the same Checkout/portal session (one idempotency key). */
const SESSION_WINDOW_MS = 10 * 60_000;
const EVENT_DRAIN_INTERVAL_MS = 30_000;
const DUNNING_INTERVAL_MS = 10 * 60_000;
const METERING_INTERVAL_MS = 60 * 60_000;

/** Statuses with a subscription that Checkout must not duplicate (changes go through the customer portal). */
const SUBSCRIBED = new Set(["trialing", "active", "past_due", "unpaid", "paused", "incomplete"]);

/** What the billing page and API show for a tenant. */
export interface BillingOverview {
  readonly enabled: boolean;
  readonly plan: { readonly id: string; readonly name: string; readonly limits: Plan | null };
  readonly subscription: {
    readonly status: string;
    readonly priceId: string | null;
    readonly currentPeriodEnd: Date | null;
    readonly cancelAtPeriodEnd: boolean;
    readonly pastDueSince: Date | null;
    /** When a past-due tenant is suspended unless it pays. */
    readonly suspendAfter: Date | null;
    readonly hasCustomer: boolean;
  } | null;
  /** Plans that can be bought through Checkout (they have a Stripe price). */
  readonly purchasable: readonly {
    readonly id: string;
    readonly name: string;
    readonly trialDays: number;
  }[];
}

/** The past-due banner of tenant pages. */
export interface PastDueBanner {
  readonly since: Date;
  readonly suspendAfter: Date;
  readonly suspended: boolean;
}

export interface BillingDeps {
  readonly config: Readonly<Config>;
  readonly db: Knex;
  readonly log: Logger;
  readonly publicUrl: string;
  /** Null when billing is off (no Stripe key): pages say so, and nothing talks to Stripe. */
  readonly gateway: StripeGateway | null;
  readonly holds: BillingHolds;
  readonly planChanges: PlanChanger;
  readonly notices: BillingNotices;
}

/**
 * Billing: checkout and the customer portal for tenants, webhook intake,
 * the event processor, dunning and metering timers. With billing off
 * (`gateway` null) only the overview works; everything else is a 409 that
 * says an operator assigns plans.
 */
export class Billing {
  readonly #deps: BillingDeps;
  readonly #log: Logger;
  readonly sync: SubscriptionSync;
  readonly processor: EventProcessor | null;
  readonly metering: Metering | null;
  #timers: NodeJS.Timeout[] = [];

  constructor(deps: BillingDeps) {
    this.#deps = deps;
    this.#log = deps.log.child({ module: "billing" });
    const billing = deps.config.billing;
    this.sync = new SubscriptionSync({
      db: deps.db,
      plans: deps.config.plans,
      defaultPlan: deps.config.defaultPlan,
      graceDays: billing.graceDays,
      cancellationRetentionDays: billing.cancellationRetentionDays,
      holds: deps.holds,
      planChanges: deps.planChanges,
      notices: deps.notices,
      log: deps.log,
    });
    this.processor =
      deps.gateway === null
        ? null
        : new EventProcessor({
            db: deps.db,
            gateway: deps.gateway,
            sync: this.sync,
            log: deps.log,
          });
    this.metering =
      deps.gateway === null
        ? null
        : new Metering({
            db: deps.db,
            gateway: deps.gateway,
            plans: deps.config.plans,
            eventName: billing.stripe.meterEventName,
            log: deps.log,
          });
  }

  get enabled(): boolean {
    return this.#deps.gateway !== null;
  }

  /** Where Checkout and the customer portal live (the portal's form-action policy allows them). */
  get redirectOrigins(): string[] {
    if (!this.enabled) return [];
    const apiUrl = this.#deps.config.billing.stripe.apiUrl;
    // A mock Stripe (tests) serves its hosted pages from its own origin.
    return apiUrl === undefined
      ? ["https://checkout.stripe.com", "https://billing.stripe.com"]
      : [new URL(apiUrl).origin];
  }

  /** Starts the timers (event drain, dunning, metering); the portal process calls it. */
  start(): void {
    if (this.processor === null || this.#timers.length > 0) return;
    const processor = this.processor;
    const metering = this.metering;
    const every = (ms: number, work: () => Promise<unknown>): void => {
      const timer = setInterval(() => {
        work().catch((error: unknown) => {
          this.#log.warn({ err: error }, "billing timer failed");
        });
      }, ms);
      timer.unref();
      this.#timers.push(timer);
    };
    every(EVENT_DRAIN_INTERVAL_MS, () => processor.drain());
    every(DUNNING_INTERVAL_MS, () => this.sync.dunningTick());
    if (metering !== null) every(METERING_INTERVAL_MS, () => metering.reportAll());
    // Events left pending by a previous process are picked up at once.
    processor.kick();
  }

  stop(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
  }

  /**
   * Takes a webhook: verifies the signature on the raw body, stores the
   * event id once, and starts processing after the caller answered.
   * Returns false for a duplicate delivery. Throws WebhookRejected (400).
   */
  async receiveWebhook(rawBody: Buffer, signature: string | undefined): Promise<boolean> {
    const gateway = this.#requireGateway();
    const event = await gateway.verifyWebhook(rawBody, signature);
    const handled = HANDLED_EVENT_TYPES.has(event.type);
    const fresh = await stripeEvents.insertOnce(
      this.#deps.db,
      event,
      handled ? "pending" : "ignored",
    );
    if (fresh && handled) this.processor?.kick();
    return fresh;
  }

  async overview(tenant: Tenant): Promise<BillingOverview> {
    const record = await withTenant(this.#deps.db, tenant.id, (trx) =>
      subscriptionRepository.get(trx),
    );
    const plans = this.#deps.config.plans;
    const plan = Object.hasOwn(plans, tenant.plan) ? plans[tenant.plan] : undefined;
    return {
      enabled: this.enabled,
      plan: { id: tenant.plan, name: plan?.name ?? tenant.plan, limits: plan ?? null },
      subscription: record === undefined ? null : this.#subscriptionView(record),
      purchasable: Object.entries(plans)
        .filter(([, candidate]) => candidate.stripePriceId !== undefined)
        .map(([id, candidate]) => ({ id, name: candidate.name, trialDays: candidate.trialDays })),
    };
  }

  /** The past-due banner for a tenant's pages, or null (billing off, or nothing overdue). */
  async banner(tenant: Tenant): Promise<PastDueBanner | null> {
    if (!this.enabled) return null;
    const record = await withTenant(this.#deps.db, tenant.id, (trx) =>
      subscriptionRepository.get(trx),
    );
    if (record?.pastDueSince === null || record === undefined) return null;
    return {
      since: record.pastDueSince,
      suspendAfter: this.sync.graceEnd(record.pastDueSince),
      suspended: tenant.status === "suspended",
    };
  }

  /** A Checkout session for `planInput` (a plan with a Stripe price); resolves to Stripe's URL. */
  async checkout(tenant: Tenant, planInput: unknown, email: string | null): Promise<string> {
    const gateway = this.#requireGateway();
    const plans = this.#deps.config.plans;
    const planId = typeof planInput === "string" ? planInput.trim() : "";
    const plan = Object.hasOwn(plans, planId) ? plans[planId] : undefined;
    const purchasable = Object.entries(plans)
      .filter(([, candidate]) => candidate.stripePriceId !== undefined)
      .map(([id]) => id);
    if (plan?.stripePriceId === undefined)
      throw badRequest(
        purchasable.length === 0
          ? "plan: no plan can be bought online; ask an operator"
          : `plan: must be one of ${purchasable.join(", ")}`,
        { field: "plan" },
      );
    const record = await withTenant(this.#deps.db, tenant.id, (trx) =>
      subscriptionRepository.get(trx),
    );
    if (record !== undefined && SUBSCRIBED.has(record.status))
      throw conflict(
        "this tenant already has a subscription: change or cancel it with “Manage billing”",
      );
    const customerId = await this.#customerFor(tenant, record, email);
    const window = Math.floor(Date.now() / SESSION_WINDOW_MS);
    const base = `${this.#deps.publicUrl.replace(/\/+$/, "")}/t/${tenant.slug}/billing`;
    const session = await gatewayCall(() =>
      gateway.createCheckout({
        tenantId: tenant.id,
        customerId,
        priceId: plan.stripePriceId ?? "",
        trialDays: plan.trialDays,
        successUrl: `${base}?checkout=success`,
        cancelUrl: `${base}?checkout=cancelled`,
        idempotencyKey: `checkout:${tenant.id}:${plan.stripePriceId ?? ""}:${String(window)}`,
      }),
    );
    this.#log.info(
      { tenantId: tenant.id, plan: planId, sessionId: session.sessionId },
      "checkout started",
    );
    return session.url;
  }

  /** A Stripe customer portal session; 409 before the tenant ever went through Checkout. */
  async portalSession(tenant: Tenant): Promise<string> {
    const gateway = this.#requireGateway();
    const record = await withTenant(this.#deps.db, tenant.id, (trx) =>
      subscriptionRepository.get(trx),
    );
    if (record?.customerId === null || record === undefined)
      throw conflict("there is no billing account yet: upgrade to a paid plan first");
    const window = Math.floor(Date.now() / SESSION_WINDOW_MS);
    const session = await gatewayCall(() =>
      gateway.createPortalSession({
        customerId: record.customerId ?? "",
        returnUrl: `${this.#deps.publicUrl.replace(/\/+$/, "")}/t/${tenant.slug}/billing`,
        idempotencyKey: `portal:${tenant.id}:${String(window)}`,
      }),
    );
    return session.url;
  }

  /** The tenant's Stripe customer, created once (idempotency key per tenant) and recorded. */
  async #customerFor(
    tenant: Tenant,
    record: SubscriptionRecord | undefined,
    email: string | null,
  ): Promise<string> {
    if (record?.customerId !== null && record?.customerId !== undefined) return record.customerId;
    const gateway = this.#requireGateway();
    const { customerId } = await gatewayCall(() =>
      gateway.createCustomer({
        tenantId: tenant.id,
        name: tenant.name,
        email,
        idempotencyKey: `customer:${tenant.id}`,
      }),
    );
    await withTenant(this.#deps.db, tenant.id, (trx) =>
      subscriptionRepository.setCustomer(trx, tenant.id as TenantId, customerId),
    );
    return customerId;
  }

  #subscriptionView(record: SubscriptionRecord): NonNullable<BillingOverview["subscription"]> {
    return {
      status: record.status,
      priceId: record.priceId,
      currentPeriodEnd: record.currentPeriodEnd,
      cancelAtPeriodEnd: record.cancelAtPeriodEnd,
      pastDueSince: record.pastDueSince,
      suspendAfter: record.pastDueSince === null ? null : this.sync.graceEnd(record.pastDueSince),
      hasCustomer: record.customerId !== null,
    };
  }

  #requireGateway(): StripeGateway {
    if (this.#deps.gateway === null)
      throw conflict("billing is off on this server; an operator assigns plans");
    return this.#deps.gateway;
  }
}

/** Stripe trouble during a person's request: 502 with a message that names Stripe, never a 500. */
async function gatewayCall<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof BillingGatewayError)
      throw new AppError(
        "upstream_failed",
        "Stripe could not be reached or refused the request; try again shortly",
      );
    throw error;
  }
}
