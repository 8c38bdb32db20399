import { readdir, rm, rmdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Knex } from "knex";
import { withSystemTransaction } from "../db/tenant-transaction.ts";
import type { Logger } from "../shared/logger.ts";

/**
 * Deletes backup directories under <backupsDir>/<slug>/ that no backups row
 * records: those of purged tenants (their rows went with the tenant, their
 * data must go too once the retention period is over) and leftovers of
 * crashed runs. The directories are listed before the rows are read, and a
 * backup's row is inserted before its directory is made, so a backup being
 * written right now is never taken for an orphan. Returns how many went.
 */
export async function removeOrphanedBackups(
  db: Knex,
  backupsDir: string,
  log: Logger,
): Promise<number> {
  const found: { slugDir: string; path: string }[] = [];
  let slugs: string[];
  try {
    slugs = await readdir(backupsDir);
  } catch {
    return 0;
  }
  for (const slug of slugs) {
    const slugDir = resolve(backupsDir, slug);
    try {
      for (const entry of await readdir(slugDir, { withFileTypes: true }))
        if (entry.isDirectory()) found.push({ slugDir, path: join(slugDir, entry.name) });
    } catch {
      // Not a directory: not ours to judge.
    }
  }
  if (found.length === 0) return 0;
  const recorded = new Set(
    (
      (await withSystemTransaction(db, (trx) => trx("backups").select("path"))) as {
        path: string;
      }[]
    ).map((row) => row.path),
  );
  let removed = 0;
  for (const { slugDir, path } of found) {
    if (recorded.has(path)) continue;
    await rm(path, { recursive: true, force: true });
    removed += 1;
    log.info(
      { path },
      "removed a backup directory no backup records (purged tenant or crashed run)",
    );
    // The slug's directory goes when its last backup went; fails harmlessly otherwise.
    await rmdir(slugDir).catch(() => undefined);
  }
  return removed;
}
