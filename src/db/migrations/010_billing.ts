import type { Knex } from "knex";
import { enableTenantIsolation } from "../row-level-security.ts";

/**
 * Billing with Stripe. `subscriptions` mirrors each tenant's Stripe
 * subscription (Stripe is the source of truth; this copy is what the portal
 * shows and what dunning reads). `stripe_events` remembers every webhook
 * event id once, with the processing state that makes delivery durable
 * (service-wide bookkeeping: ids and references only, never payloads).
 * `meter_reports` records the managed-key tokens already sent to the Stripe
 * meter per tenant and day, so a retry never reports them twice.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("subscriptions", (t) => {
    t.uuid("tenant_id").primary().references("tenants.id").onDelete("cascade");
    t.text("stripe_customer_id").unique();
    t.text("stripe_subscription_id").unique();
    /** Stripe's status (trialing, active, past_due, unpaid, canceled, paused, incomplete…), or none. */
    t.text("status").notNullable().defaultTo("none");
    t.text("price_id");
    t.timestamp("current_period_end", { useTz: true });
    t.boolean("cancel_at_period_end").notNullable().defaultTo(false);
    /** When the subscription first went past due in this episode; cleared once it is paid. */
    t.timestamp("past_due_since", { useTz: true });
    /** When the owners were told about it (the banner shows from past_due_since on). */
    t.timestamp("past_due_notified_at", { useTz: true });
    /** When a cancellation's consequences (default plan, deletion scheduled) were carried out. */
    t.timestamp("cancellation_handled_at", { useTz: true });
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(["status", "past_due_since"]);
  });
  await enableTenantIsolation(knex, "subscriptions");

  await knex.schema.createTable("stripe_events", (t) => {
    t.text("id").primary();
    t.text("type").notNullable();
    /** The id of the event's object (subscription, checkout session, invoice), to re-read from Stripe. */
    t.text("object_id");
    /** The subscription the event is about, when its payload names one (a hint: Stripe is re-read). */
    t.text("subscription_id");
    t.timestamp("received_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text("status").notNullable().defaultTo("pending");
    t.integer("attempts").notNullable().defaultTo(0);
    t.timestamp("next_attempt_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    /** A processor holds the event until this time; a crashed one's claim simply runs out. */
    t.timestamp("locked_until", { useTz: true });
    t.text("error");
    t.timestamp("processed_at", { useTz: true });
    t.check("status in ('pending', 'done', 'failed', 'ignored')");
    t.index(["status", "next_attempt_at"]);
  });

  await knex.schema.createTable("meter_reports", (t) => {
    t.uuid("tenant_id").notNullable().references("tenants.id").onDelete("cascade");
    /** The UTC day the tokens were used. */
    t.date("day").notNullable();
    /** Tokens reported for that day so far (the sum of every increment sent). */
    t.bigInteger("tokens_reported").notNullable().defaultTo(0);
    /** Increments sent for that day; the next one's identifier is (tenant, day, increments + 1). */
    t.integer("increments").notNullable().defaultTo(0);
    /** An increment being sent: its size, so a retry sends the same identifier with the same value. */
    t.bigInteger("pending_tokens");
    t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(["tenant_id", "day"]);
  });
  await enableTenantIsolation(knex, "meter_reports");
}
