import { resolve } from "node:path";
import type { Command } from "commander";
import type { Actor } from "../audit/audit-log.ts";
import type { App } from "../main.ts";
import { writeOut } from "./output.ts";

const RESTORE_HELP = `
Replaces the tenant's Switchboard data (agents, memory, members, audit log,
usage, ...) with the backup's, in one transaction, after checking that the
backup is this tenant's and that every file matches its manifest; on any
mismatch nothing is written. The tenant's plan, holds, billing and homeserver
tokens are kept as they are now.

--homeserver-database also replaces the homeserver's database; suspend the
tenant first (switchboard tenant suspend) and wait for the provisioner to
stop its homeserver, then resume it after the restore.`;

/** `switchboard backup create|list|restore`: per-tenant backups (src/provisioning/backups.ts). */
export function registerBackupCommands(
  program: Command,
  withApp: <T>(task: (app: App) => Promise<T>) => Promise<T>,
  by: Actor,
): void {
  const backup = program.command("backup").description("per-tenant backups");
  backup
    .command("create")
    .description(
      "back up a tenant now (its data, and its homeserver's database where the driver allows)",
    )
    .requiredOption("--tenant <slug>", "tenant slug")
    .action((options: { tenant: string }) =>
      withApp(async (app) => {
        const found = await app.tenants.requireBySlug(options.tenant);
        const made = await app.backups.create({ id: found.id, slug: found.slug });
        writeOut(`backed up ${found.slug}: ${made.path} (${String(made.bytes ?? 0)} bytes)`);
      }),
    );
  backup
    .command("list")
    .description("a tenant's backups, newest first")
    .requiredOption("--tenant <slug>", "tenant slug")
    .action((options: { tenant: string }) =>
      withApp(async (app) => {
        const found = await app.tenants.requireBySlug(options.tenant);
        for (const row of await app.backups.list(found.id))
          writeOut(
            [
              row.createdAt.toISOString(),
              row.status,
              row.bytes === null ? "-" : String(row.bytes),
              row.path,
              row.error ?? "",
            ].join("\t"),
          );
      }),
    );
  backup
    .command("restore")
    .description("restore a tenant from a backup directory")
    .requiredOption("--tenant <slug>", "tenant slug")
    .requiredOption("--from <dir>", "the backup's directory (holds manifest.json)")
    .option("--homeserver-database", "also restore the homeserver's database (tenant suspended)")
    .addHelpText("after", RESTORE_HELP)
    .action((options: { tenant: string; from: string; homeserverDatabase?: boolean }) =>
      withApp(async (app) => {
        const found = await app.tenants.requireBySlug(options.tenant);
        const result = await app.backups.restore(
          { id: found.id, slug: found.slug },
          resolve(options.from),
          by,
          { homeserverDatabase: options.homeserverDatabase === true },
        );
        const rows = Object.values(result.rows).reduce((sum, n) => sum + n, 0);
        writeOut(
          `restored ${found.slug} from ${options.from}: ${String(rows)} rows` +
            (result.homeserverDatabase ? " and the homeserver database" : ""),
        );
      }),
    );
}
