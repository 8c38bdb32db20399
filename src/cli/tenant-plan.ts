import type { Command } from "commander";
import type { Actor } from "../audit/audit-log.ts";
import type { App } from "../main.ts";
import { writeOut } from "./output.ts";

const PLAN_HELP = `
For operators while billing is off (no Stripe keys): with billing on, Stripe
decides the plan and this change would be undone by the next subscription
event. A downgrade below the tenant's active agents pauses the newest extra
agents (never deletes them) and mails the tenant's owners which.`;

/** `switchboard tenant plan`: assign a plan from config.plans to a tenant. */
export function registerTenantPlanCommand(
  tenant: Command,
  withApp: <T>(task: (app: App) => Promise<T>) => Promise<T>,
  by: Actor,
): void {
  tenant
    .command("plan")
    .description("put a tenant on a plan from config.plans")
    .requiredOption("--tenant <slug>", "tenant slug")
    .requiredOption("--plan <id>", "plan id from config.plans")
    .addHelpText("after", PLAN_HELP)
    .action((options: { tenant: string; plan: string }) =>
      withApp(async (app) => {
        const found = await app.tenants.requireBySlug(options.tenant);
        const result = await app.planChanges.apply(found.id, options.plan, by);
        if (!result.changed) {
          writeOut(`${found.slug} is already on the ${result.to} plan; nothing changed`);
          return;
        }
        writeOut(`${found.slug}: plan ${result.from} -> ${result.to}`);
        if (result.pausedAgents.length > 0)
          writeOut(
            `paused (over the plan's agent limit; owners mailed): ${result.pausedAgents.join(", ")}`,
          );
      }),
    );
}
