import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AppServiceRegistration } from "matrix-appservice-bridge";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import type { TenantHomeserver } from "../tenants/types.ts";
import { escapeRegex } from "../shared/text.ts";

const TEMPLATE_PATH = fileURLToPath(
  new URL("../../appservice/registration.template.yaml", import.meta.url),
);

export interface RegistrationParameters {
  /** Base URL at which homeservers reach the runtime. */
  readonly runtimeUrl: string;
  readonly agentPrefix: string;
  readonly botLocalpart: string;
  /** The relay account bridges log in as (src/bridges). */
  readonly relayLocalpart: string;
}

/** The registration as matrix-bot-sdk's Appservice wants it. */
export interface RegistrationDocument {
  id: string;
  url: string;
  as_token: string;
  hs_token: string;
  sender_localpart: string;
  rate_limited?: boolean;
  "de.sorunome.msc2409.push_ephemeral"?: boolean;
  namespaces: {
    users: { exclusive: boolean; regex: string }[];
    // matrix-appservice-bridge leaves empty lists out of its output.
    aliases?: { exclusive: boolean; regex: string }[];
    rooms?: { exclusive: boolean; regex: string }[];
  };
}

function fill(value: unknown, placeholders: Readonly<Record<string, string>>): unknown {
  if (typeof value === "string")
    return value.replace(/\{(\w+)\}/g, (match, name: string) => placeholders[name] ?? match);
  if (Array.isArray(value)) return value.map((item) => fill(item, placeholders));
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, child]) => [key, fill(child, placeholders)]),
    );
  }
  return value;
}

/**
 * Renders the tenant's appservice registration from appservice/registration.template.yaml
 * with the tenant's own tokens, through matrix-appservice-bridge's
 * AppServiceRegistration (which checks the required fields).
 */
export function buildRegistration(
  homeserver: TenantHomeserver,
  parameters: RegistrationParameters,
): RegistrationDocument {
  const template = parseYaml(readFileSync(TEMPLATE_PATH, "utf8")) as Record<string, unknown>;
  const filled = fill(template, {
    runtimeUrl: parameters.runtimeUrl.replace(/\/+$/, ""),
    tenantId: homeserver.tenantId,
    botLocalpart: parameters.botLocalpart,
    relayLocalpart: escapeRegex(parameters.relayLocalpart),
    agentPrefix: escapeRegex(parameters.agentPrefix),
    serverNameRegex: escapeRegex(homeserver.serverName),
  }) as Record<string, unknown>;
  const registration = AppServiceRegistration.fromObject({
    ...(filled as object),
    id: homeserver.registrationId,
    as_token: homeserver.asToken,
    hs_token: homeserver.hsToken,
  } as Parameters<typeof AppServiceRegistration.fromObject>[0]);
  return registration.getOutput() as unknown as RegistrationDocument;
}

export function registrationToYaml(registration: RegistrationDocument): string {
  return stringifyYaml(registration);
}
