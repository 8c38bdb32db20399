import type { Knex } from "knex";
import {
  UserActivityTracker,
  UserActivityTrackerConfig,
  type UserActivity,
  type UserActivitySet,
} from "matrix-appservice-bridge";
import { withTenant } from "../db/tenant-transaction.ts";
import type { TenantId } from "../shared/ids.ts";
import type { Logger } from "../shared/logger.ts";

/**
 * Active people per tenant, kept by matrix-appservice-bridge's
 * UserActivityTracker (which debounces changes) and persisted in
 * user_activity so counts survive restarts.
 */
export class TenantActivity {
  readonly #tracker: UserActivityTracker;
  #activeUsers = 0;

  private constructor(
    db: Knex,
    tenantId: TenantId,
    dataSet: UserActivitySet,
    saveDelayMs: number,
    log: Logger,
  ) {
    const config = { ...UserActivityTrackerConfig.DEFAULT, debounceTimeMs: saveDelayMs };
    this.#tracker = new UserActivityTracker(config, dataSet, (state) => {
      this.#activeUsers = state.activeUsers;
      const changed = state.changed.flatMap((userId) => {
        const activity = state.dataSet.get(userId);
        return activity === undefined
          ? []
          : [{ tenant_id: tenantId, user_id: userId, activity: JSON.stringify(activity) }];
      });
      if (changed.length === 0) return;
      void withTenant(db, tenantId, (trx) =>
        trx("user_activity")
          .insert(changed)
          .onConflict(["tenant_id", "user_id"])
          .merge(["activity"]),
      ).catch((error: unknown) => {
        log.warn({ err: error, tenantId }, "could not save user activity");
      });
    });
    this.#activeUsers = this.#tracker.countActiveUsers().allUsers;
  }

  static async load(
    db: Knex,
    tenantId: TenantId,
    saveDelayMs: number,
    log: Logger,
  ): Promise<TenantActivity> {
    const rows = (await withTenant(db, tenantId, (trx) =>
      trx("user_activity").select("user_id", "activity"),
    )) as {
      user_id: string;
      activity: UserActivity | string;
    }[];
    const dataSet: UserActivitySet = new Map(
      rows.map((row) => [
        row.user_id,
        typeof row.activity === "string"
          ? (JSON.parse(row.activity) as UserActivity)
          : row.activity,
      ]),
    );
    return new TenantActivity(db, tenantId, dataSet, saveDelayMs, log);
  }

  /** A person (not an agent) did something in a room with agents. */
  record(userId: string, isDirect: boolean): void {
    this.#tracker.updateUserActivity(userId, isDirect ? { private: true } : {});
  }

  /** People counted as active by the tracker's rules (active on enough days lately). */
  get activeUsers(): number {
    return this.#activeUsers;
  }
}
