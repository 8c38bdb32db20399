import type { Command } from "commander";
import { parseOrThrow } from "../agents/validation.ts";
import { accountRepository } from "../accounts/repository.ts";
import { EmailSchema } from "../accounts/service.ts";
import type { App } from "../main.ts";
import { generateToken } from "../secrets/cipher.ts";
import { readSecretFromStdin, writeOut } from "./output.ts";

/** 18 random bytes: a 24-character password nobody has to type twice. */
const GENERATED_PASSWORD_BYTES = 18;

const CREATE_HELP = `
The password is read from standard input, so it stays out of shell history and
process lists:
  printf '%s' "$PASSWORD" | switchboard operator create --email ops@example.org
When standard input is a terminal or empty, a strong password is generated and
printed once. An existing account keeps its password and only becomes an
operator. Operators see the portal's admin area at /admin.`;

/** `switchboard operator ...`: platform operators, the first of whom can only come from here. */
export function registerOperatorCommands(
  program: Command,
  withApp: <T>(task: (app: App) => Promise<T>) => Promise<T>,
): void {
  const operator = program
    .command("operator")
    .description("platform operators (the portal's admin area)");
  operator
    .command("create")
    .description("create an operator account, or make an existing account an operator")
    .requiredOption("--email <email>", "the operator's email: their login")
    .addHelpText("after", CREATE_HELP)
    .action((options: { email: string }) =>
      withApp(async (app) => {
        const email = parseOrThrow(EmailSchema, options.email);
        const existing = await accountRepository.findByEmail(app.database.knex, email);
        if (existing !== undefined) {
          await app.accounts.makeOperator(email, "");
          writeOut(`${email} is now an operator (its password is unchanged)`);
          return;
        }
        const typed = process.stdin.isTTY ? "" : await readSecretFromStdin();
        const password = typed === "" ? generateToken(GENERATED_PASSWORD_BYTES) : typed;
        await app.accounts.makeOperator(email, password);
        writeOut(`created operator ${email}; sign in to the portal and open /admin`);
        if (typed === "") writeOut(`password (shown only now): ${password}`);
      }),
    );
}
