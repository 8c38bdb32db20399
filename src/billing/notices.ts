import type { Knex } from "knex";
import type { Mailer } from "../accounts/mailer.ts";
import { accountRepository } from "../accounts/repository.ts";
import type { AccountId } from "../accounts/types.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import { describeError } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";

/** Mails a tenant's owners about billing (a failed payment); a failed mail is logged, not retried. */
export class BillingNotices {
  readonly #db: Knex;
  readonly #mailer: Mailer;
  readonly #publicUrl: string;
  readonly #log: Logger;

  constructor(deps: { db: Knex; mailer: Mailer; publicUrl: string; log: Logger }) {
    this.#db = deps.db;
    this.#mailer = deps.mailer;
    this.#publicUrl = deps.publicUrl.replace(/\/+$/, "");
    this.#log = deps.log.child({ module: "billing-notices" });
  }

  /** Tells the owners that payment failed and when the tenant will be suspended. */
  async pastDue(
    tenant: { id: TenantId; slug: string; name: string },
    suspendAfter: Date,
  ): Promise<void> {
    const day = suspendAfter.toISOString().slice(0, 10);
    await this.#mailOwners(tenant.id, {
      subject: `${tenant.name}: payment failed`,
      text:
        `We could not collect the payment for "${tenant.name}".\n\n` +
        `Your agents keep working until ${day} (UTC). If the payment still fails by then, ` +
        `the tenant is suspended: agents stop answering, and all data is kept.\n\n` +
        `Update your payment method here:\n${this.#publicUrl}/t/${tenant.slug}/billing\n`,
    });
  }

  async #mailOwners(tenantId: TenantId, mail: { subject: string; text: string }): Promise<void> {
    const ownerIds = await withTenant(
      this.#db,
      tenantId,
      async (trx) =>
        (await trx("memberships").where({ role: "owner" }).pluck("account_id")) as AccountId[],
    );
    for (const owner of await accountRepository.findByIds(this.#db, ownerIds)) {
      try {
        await this.#mailer.send({ to: owner.email, ...mail });
      } catch (error) {
        this.#log.warn(
          { tenantId, accountId: owner.id, err: describeError(error) },
          "could not mail an owner about billing",
        );
      }
    }
  }
}
