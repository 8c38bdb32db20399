#!/usr/bin/env node
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import type { Actor } from "../audit/audit-log.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { startEmbedded } from "../embedded/start.ts";
import { createApp, type App } from "../main.ts";
import { createProvisioner } from "../provisioning/provisioner.ts";
import { isAppError } from "../shared/errors.ts";
import { registerBackupCommands } from "./backup.ts";
import { registerOperatorCommands } from "./operator.ts";
import { registerTenantPlanCommand } from "./tenant-plan.ts";
import { printDemo, readSecretFromStdin, writeOut } from "./output.ts";

/**
 * `switchboard`: every process and every operator task goes through here,
 * with the composition root (createApp) behind it.
 */
/** Who CLI actions are recorded as in the audit log. */
const OPERATOR: Actor = { id: "operator", via: "cli" };

const program = new Command()
  .name("switchboard")
  .description("AI agents that live in team chat")
  .option(
    "-c, --config <file>",
    "YAML config file (environment variables override it)",
    process.env.SWITCHBOARD_CONFIG,
  );

async function config(): Promise<Readonly<Config>> {
  return loadConfig(program.opts<{ config?: string }>().config);
}

/** Runs a task against the app and always closes it. */
async function withApp<T>(task: (app: App) => Promise<T>): Promise<T> {
  const app = await createApp(await config());
  try {
    return await task(app);
  } finally {
    await app.close();
  }
}

function untilSignal(stop: () => Promise<void>): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      void stop().then(() => process.exit(0));
    });
  }
}

program
  .command("start")
  .description(
    "run everything on this machine: database, a local Synapse, the runtime, the portal and a demo tenant",
  )
  .action(async () => {
    const loaded = await config();
    const stack = await startEmbedded(loaded);
    printDemo(stack.demo, join(loaded.dataDir, "demo.json"));
    untilSignal(() => stack.stop());
  });

program
  .command("runtime")
  .description("run the appservice runtime for every tenant in the database")
  .action(async () => {
    const app = await createApp(await config());
    await app.runtime.start();
    untilSignal(() => app.close());
  });

program
  .command("provisioner")
  .description("run the reconciler that creates, starts, stops and removes tenant homeservers")
  .action(async () => {
    const app = await createApp(await config());
    const provisioner = await createProvisioner(app);
    provisioner.start();
    untilSignal(async () => {
      await provisioner.stop();
      await app.close();
    });
  });

program
  .command("portal")
  .description("run the web portal and JSON API")
  .action(async () => {
    const app = await createApp(await config());
    await app.portal.start();
    untilSignal(() => app.close());
  });

program
  .command("serve")
  .description(
    "run the runtime, the portal and the provisioner in one process (self-hosting, docker-compose.yml)",
  )
  .action(async () => {
    const app = await createApp(await config());
    const provisioner = await createProvisioner(app);
    await app.runtime.start();
    await app.portal.start();
    provisioner.start();
    untilSignal(async () => {
      await provisioner.stop();
      await app.close();
    });
  });

program
  .command("migrate")
  .description("bring the database schema up to date (start does this too)")
  .action(() =>
    withApp((): Promise<void> => {
      writeOut("database is up to date");
      return Promise.resolve();
    }),
  );

const configCommand = program.command("config").description("configuration tools");
configCommand
  .command("check")
  .argument("<file>", "config file to validate")
  .description("validate a config file (plus environment) without starting anything")
  .action(async (file: string) => {
    await loadConfig(file);
    writeOut(`${file}: valid`);
  });

const tenant = program.command("tenant").description("manage tenants");
tenant
  .command("create")
  .requiredOption("--slug <slug>", "short unique name")
  .requiredOption("--name <name>", "display name")
  .requiredOption("--server-name <serverName>", "the homeserver's server_name")
  .requiredOption("--homeserver-url <url>", "client-server API URL the runtime uses")
  .action((options: { slug: string; name: string; serverName: string; homeserverUrl: string }) =>
    withApp(async (app) => {
      const { tenant: created } = await app.tenants.create(options);
      writeOut(
        `created tenant ${created.slug} (${created.id}); next: switchboard registration --tenant ${created.slug} --out registration.yaml`,
      );
    }),
  );
tenant.command("list").action(() =>
  withApp(async (app) => {
    for (const row of await app.tenantRepository.listTenants(app.database.knex))
      writeOut(`${row.slug}\t${row.status}\t${row.id}\t${row.name}`);
  }),
);
registerTenantPlanCommand(tenant, withApp, OPERATOR);

program
  .command("registration")
  .description("print (or write) the appservice registration for a tenant's homeserver")
  .requiredOption("--tenant <slug>", "tenant slug")
  .option("--out <file>", "write to this file (mode 0600) instead of standard output")
  .action((options: { tenant: string; out?: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      const yaml = app.registrationYaml(await app.tenants.requireHomeserver(found));
      if (options.out === undefined) process.stdout.write(yaml);
      else await writeFile(options.out, yaml, { mode: 0o600 });
    }),
  );

const agent = program.command("agent").description("manage a tenant's agents");
agent
  .command("create")
  .requiredOption("--tenant <slug>", "tenant slug")
  .requiredOption("--name <name>", "agent name (its Matrix ID is @<prefix><name>:<server>)")
  .option("--display-name <text>")
  .option("--instructions <text>")
  .addOption(new Option("--provider <provider>").choices(["openai", "anthropic"]))
  .option("--model <model>")
  .option("--base-url <url>")
  .addOption(new Option("--trigger <policy>").choices(["mentions", "all"]))
  .addOption(new Option("--memory <scope>").choices(["private", "shared"]))
  .addOption(new Option("--key-source <source>").choices(["managed", "own"]))
  .action(
    (options: {
      tenant: string;
      name: string;
      displayName?: string;
      instructions?: string;
      provider?: string;
      model?: string;
      baseUrl?: string;
      trigger?: string;
      memory?: string;
      keySource?: string;
    }) =>
      withApp(async (app) => {
        const found = await app.tenants.requireBySlug(options.tenant);
        const created = await app.agents.create(
          found.id,
          {
            name: options.name,
            displayName: options.displayName,
            instructions: options.instructions,
            provider: options.provider,
            model: options.model,
            baseUrl: options.baseUrl,
            triggerPolicy: options.trigger,
            memoryScope: options.memory,
            keySource: options.keySource,
          },
          OPERATOR,
        );
        writeOut(`created agent ${created.name} (${created.provider}/${created.model})`);
      }),
  );
agent
  .command("list")
  .requiredOption("--tenant <slug>", "tenant slug")
  .action((options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      for (const row of await app.agents.list(found.id))
        writeOut(
          `${row.name}\t${row.status}\t${row.provider}/${row.model}\t${row.triggerPolicy}\t${row.memoryScope}`,
        );
    }),
  );

registerOperatorCommands(program, withApp);
registerBackupCommands(program, withApp, OPERATOR);

const admin = program
  .command("admin")
  .description("who administers a tenant by chatting with the bot");
admin
  .command("add")
  .requiredOption("--tenant <slug>", "tenant slug")
  .argument("<userId>", "Matrix ID")
  .action((userId: string, options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      await app.tenants.addAdmin(found.id, userId, "operator", OPERATOR);
      writeOut(`${userId} now administers ${found.slug} by chat`);
    }),
  );
admin
  .command("remove")
  .requiredOption("--tenant <slug>", "tenant slug")
  .argument("<userId>", "Matrix ID")
  .action((userId: string, options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      writeOut(
        (await app.tenants.removeAdmin(found.id, userId, OPERATOR))
          ? `${userId} is no longer an admin`
          : `${userId} was not an admin`,
      );
    }),
  );
admin
  .command("list")
  .requiredOption("--tenant <slug>", "tenant slug")
  .action((options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      for (const row of await app.tenants.admins(found.id))
        writeOut(`${row.userId}\t${row.source}`);
    }),
  );

const person = program.command("person").description("people as the agents know them");
person
  .command("link")
  .description("make two Matrix IDs one person, so memory follows both")
  .requiredOption("--tenant <slug>", "tenant slug")
  .argument("<userIdA>")
  .argument("<userIdB>")
  .action((userIdA: string, userIdB: string, options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      writeOut(`linked: person ${await app.memory.link(found.id, userIdA, userIdB, OPERATOR)}`);
    }),
  );
person
  .command("unlink")
  .requiredOption("--tenant <slug>", "tenant slug")
  .argument("<userId>")
  .action((userId: string, options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      writeOut(
        `unlinked: ${userId} is now person ${await app.memory.unlink(found.id, userId, OPERATOR)}`,
      );
    }),
  );
person
  .command("export")
  .description("print everything remembered about the person behind a Matrix ID, as JSON")
  .requiredOption("--tenant <slug>", "tenant slug")
  .argument("<userId>")
  .action((userId: string, options: { tenant: string }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      writeOut(JSON.stringify(await app.memory.exportFor(found.id, userId, OPERATOR), null, 2));
    }),
  );

program
  .command("key")
  .description("store a tenant's own model key (read from standard input, stored encrypted)")
  .requiredOption("--tenant <slug>", "tenant slug")
  .addOption(
    new Option("--provider <provider>").choices(["openai", "anthropic"]).makeOptionMandatory(),
  )
  .action((options: { tenant: string; provider: "openai" | "anthropic" }) =>
    withApp(async (app) => {
      const found = await app.tenants.requireBySlug(options.tenant);
      const { hint } = await app.providerKeys.set(
        found.id,
        options.provider,
        await readSecretFromStdin(),
        OPERATOR,
      );
      writeOut(`stored the ${options.provider} key ${hint} for ${found.slug}`);
    }),
  );

program
  .command("synapse-install")
  .description("install the Synapse chroot used by `start` and the tests (needs root)")
  .action(
    () =>
      new Promise<void>((resolve, reject) => {
        const script = fileURLToPath(new URL("../../synapse/install.sh", import.meta.url));
        spawn("sh", [script], { stdio: "inherit" }).on("exit", (code) => {
          if (code === 0) resolve();
          else reject(new Error(`install.sh exited with ${String(code)}`));
        });
      }),
  );

try {
  await program.parseAsync();
} catch (error) {
  process.exitCode = 1;
  process.stderr.write(
    `switchboard: ${isAppError(error) ? error.message : error instanceof Error ? error.message : String(error)}\n`,
  );
}
