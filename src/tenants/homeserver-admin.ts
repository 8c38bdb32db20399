import type { Knex } from "knex";
import { auditLog, type Actor } from "../audit/audit-log.ts";
import { withTenant } from "../db/tenant-transaction.ts";
import type { SecretCipher } from "../secrets/cipher.ts";
import { AppError, conflict } from "../shared/errors.ts";
import type { TenantId } from "../shared/ids.ts";

/** The tenant's bootstrap Matrix admin, as its owners see it. */
export interface HomeserverAdmin {
  readonly userId: string;
  /** True until an owner has been shown the password (it is shown once, then forgotten). */
  readonly passwordWaiting: boolean;
}

interface AdminRow {
  admin_user_id: string | null;
  admin_password_encrypted: string | null;
  bootstrapped_at: Date | null;
}

/**
 * The password of the homeserver admin account the provisioner made. It is
 * kept encrypted only until the bootstrap is done and an owner has seen it:
 * showing it erases it, so a later leak of the database cannot reveal it
 * and the owner knows they hold the only copy.
 */
export class HomeserverAdmins {
  readonly #db: Knex;
  readonly #cipher: SecretCipher;

  constructor(db: Knex, cipher: SecretCipher) {
    this.#db = db;
    this.#cipher = cipher;
  }

  /** The admin account, once the provisioner has bootstrapped the homeserver; null before. */
  async of(tenantId: TenantId): Promise<HomeserverAdmin | null> {
    const row = await withTenant(this.#db, tenantId, (trx) => this.#row(trx));
    if (row?.admin_user_id == null || row.bootstrapped_at === null) return null;
    return { userId: row.admin_user_id, passwordWaiting: row.admin_password_encrypted !== null };
  }

  /** Returns the password once and erases it; the second call is a 410 saying so. */
  async revealOnce(tenantId: TenantId, by: Actor): Promise<{ userId: string; password: string }> {
    return withTenant(this.#db, tenantId, async (trx) => {
      const row = await this.#row(trx, true);
      if (row?.admin_user_id == null || row.bootstrapped_at === null)
        throw conflict("the homeserver is still being set up; its admin account comes with it");
      if (row.admin_password_encrypted === null) {
        throw new AppError(
          "bad_request",
          "the admin password was shown once already and is no longer kept; reset it with the homeserver's admin tools if it is lost",
          { httpStatus: 410 },
        );
      }
      const password = this.#cipher.decrypt(row.admin_password_encrypted);
      await trx("provisioning").update({ admin_password_encrypted: null });
      await auditLog.recordBy(
        trx,
        tenantId,
        by,
        "homeserver.admin_password_shown",
        row.admin_user_id,
      );
      return { userId: row.admin_user_id, password };
    });
  }

  async #row(trx: Knex.Transaction, lock = false): Promise<AdminRow | undefined> {
    const query = trx("provisioning").first(
      "admin_user_id",
      "admin_password_encrypted",
      "bootstrapped_at",
    );
    return (await (lock ? query.forUpdate() : query)) as AdminRow | undefined;
  }
}
