import type { Knex } from "knex";

/**
 * Which key paid for each turn, and the managed key's tokens per day: the
 * plan's monthly managed allowance and the Stripe meter count what the
 * operator's key actually paid for, not what an agent is set to today.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("turns", (t) => {
    t.text("key_source");
    t.check("key_source in ('managed', 'own')", [], "turns_key_source_check");
  });
  await knex.schema.alterTable("usage_daily", (t) => {
    t.bigInteger("managed_tokens").notNullable().defaultTo(0);
  });
}
