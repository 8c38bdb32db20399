import type { DemoDetails } from "../embedded/start.ts";

/** CLI output goes to stdout as plain lines; logs go through pino. */
export function writeOut(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function printDemo(demo: DemoDetails, detailsFile: string): void {
  writeOut("");
  writeOut("Switchboard is running.");
  writeOut(`  Homeserver:  ${demo.homeserverUrl}   (server name ${demo.serverName})`);
  writeOut(`  Log in as:   ${demo.user}`);
  writeOut(`  Password:    ${demo.password}`);
  writeOut(`  Talk to:     ${demo.agent}   (invite it to a room or start a DM)`);
  writeOut(`  Manage:      ${demo.bot}   (start a DM and say "help")`);
  writeOut(`  Portal:      ${demo.portalUrl}   (sign in as ${demo.portalEmail}, same password)`);
  if (!demo.modelConfigured) {
    writeOut(
      "  No model is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for Ollama etc.) or ANTHROPIC_API_KEY and restart.",
    );
  }
  writeOut(`  These details are also in ${detailsFile}. Stop with Ctrl-C.`);
  writeOut("");
}

/** Reads a secret from standard input so it never appears in shell history or process lists. */
export async function readSecretFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}
