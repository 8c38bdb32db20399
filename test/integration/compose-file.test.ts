import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ConfigSchema } from "../../src/config/schema.ts";
import { BRIDGE_NETWORKS, NETWORKS } from "../../src/bridges/networks.ts";

/**
 * docker-compose.yml, validated the way CI can without a Docker engine:
 * Debian's docker-compose renders it (`config`) with the documented .env,
 * and the result must wire what the compose driver expects.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);

interface Service {
  image?: string;
  entrypoint?: string[];
  command?: string[];
  profiles?: string[];
  environment?: Record<string, string>;
  /** docker-compose 1.29 prints short syntax: "source:target:mode". */
  volumes?: string[];
  user?: string;
}

/** The .env.example variables, with values a self-hoster would fill in. */
async function documentedEnv(): Promise<Record<string, string>> {
  const text = await readFile(`${ROOT}.env.example`, "utf8");
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^#?\s*([A-Z][A-Z0-9_]+)=(.*)$/.exec(line);
    if (match !== null) env[match[1] as string] = match[2] as string;
  }
  return env;
}

async function render(env: Record<string, string>): Promise<{ services: Record<string, Service> }> {
  const { stdout } = await run("docker-compose", ["-f", "docker-compose.yml", "config"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
  });
  return parse(stdout) as { services: Record<string, Service> };
}

const FILLED = {
  POSTGRES_PASSWORD: "pg-secret",
  SWITCHBOARD_MASTER_KEY: "bWFzdGVyLWtleS1vZi10aGlzLXRlc3QtMzItYnl0ZXMh",
  SWITCHBOARD_PORTAL_URL: "https://switchboard.example.org",
  SWITCHBOARD_BASE_DOMAIN: "example.org",
  COMPOSE_PROFILES: "slack,discord,telegram",
};

describe("docker-compose.yml", () => {
  it("documents every variable it reads in .env.example", async () => {
    const compose = await readFile(`${ROOT}docker-compose.yml`, "utf8");
    const documented = await documentedEnv();
    const used = new Set([...compose.matchAll(/\$\{([A-Z0-9_]+)/g)].map((match) => match[1]));
    for (const name of used) expect(Object.keys(documented), name).toContain(name);
  });

  it("refuses to render without the required secrets, naming them", async () => {
    const failure = await render({ ...FILLED, POSTGRES_PASSWORD: "" }).catch(
      (error: unknown) => error as { stderr: string },
    );
    expect((failure as { stderr: string }).stderr).toMatch(/set POSTGRES_PASSWORD in \.env/);
  });

  it("runs Switchboard with the compose driver, sharing each service's volume at the paths the driver writes", async () => {
    const { services } = await render({ ...(await documentedEnv()), ...FILLED });
    const switchboard = services.switchboard!;
    expect(switchboard.command).toEqual(["serve"]);
    expect(switchboard.environment?.SWITCHBOARD_PROVISIONING_DRIVER).toBe("compose");
    const config = ConfigSchema.parse({ provisioning: { driver: "compose" } });
    const filesDir = config.provisioning.compose.filesDir;
    const mountOf = (service: Service, volume: string): string | undefined =>
      service.volumes?.map((mount) => mount.split(":")).find(([source]) => source === volume)?.[1];

    expect(mountOf(switchboard, "synapse-files")).toBe(`${filesDir}/synapse`);
    expect(mountOf(services.synapse!, "synapse-files")).toBe("/srv/hs");
    expect(services.synapse!.entrypoint).toEqual(["/supervise.sh", "/srv/hs"]);
    expect(new URL(config.provisioning.compose.homeserverUrl).hostname).toBe("synapse");

    for (const network of BRIDGE_NETWORKS) {
      const service = services[`mautrix-${network}`]!;
      expect(service.profiles).toEqual([network]);
      expect(mountOf(switchboard, `${network}-files`)).toBe(`${filesDir}/bridges/${network}`);
      expect(mountOf(service, `${network}-files`)).toBe("/data");
      expect(service.entrypoint).toEqual(["/supervise.sh", "/data"]);
      // The provisioner's files, never rewritten by the bridge (its config upgrader would).
      expect(service.command).toEqual([
        `/usr/bin/${NETWORKS[network].bridgeName}`,
        "-c",
        "/data/config.yaml",
        "-r",
        "/data/registration.yaml",
        "--no-update",
      ]);
      expect(service.image).toBe(NETWORKS[network].defaultImage);
      // Processes run as the Switchboard image's user, which owns the private files.
      expect(service.user).toBe("1000:1000");
    }
  });

  it("keeps secrets in .env: the compose file holds none itself", async () => {
    const compose = await readFile(`${ROOT}docker-compose.yml`, "utf8");
    expect(compose).not.toMatch(/(PASSWORD|KEY|SECRET|TOKEN):\s+[^$\s]/);
  });
});
