import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  buildRegistration,
  registrationToYaml,
  type RegistrationDocument,
  type RegistrationParameters,
} from "../../src/matrix/registration.ts";
import type { TenantId } from "../../src/shared/ids.ts";
import type { TenantHomeserver } from "../../src/tenants/types.ts";

const TENANT_ID = "0b5c2a8e-6a43-4d0e-9a57-4f7d0a1c9e21" as TenantId;

function homeserver(overrides: Partial<TenantHomeserver> = {}): TenantHomeserver {
  return {
    tenantId: TENANT_ID,
    serverName: "acme.test",
    clientUrl: "http://127.0.0.1:8008",
    registrationId: "switchboard-acme",
    asToken: "as-token-of-acme-0123456789",
    hsToken: "hs-token-of-acme-9876543210",
    hsTokenSha256: "unused-here",
    ...overrides,
  };
}

const PARAMETERS: RegistrationParameters = {
  runtimeUrl: "http://127.0.0.1:9000",
  agentPrefix: "ai_",
  botLocalpart: "switchboard",
  relayLocalpart: "switchboard-relay",
};

/** The agents' exclusive user namespace regex of a registration (the first; the relay account's is second). */
function userRegex(registration: RegistrationDocument): string {
  expect(registration.namespaces.users).toHaveLength(2);
  const [namespace] = registration.namespaces.users;
  expect(namespace?.exclusive).toBe(true);
  return namespace!.regex;
}

/**
 * Whether a homeserver would treat the user as the appservice's. Synapse uses
 * Python's re.match (anchored at the start only); the spec intends a whole
 * match. A correct regex gives the same answer both ways for these IDs.
 */
function claims(regex: string, userId: string): boolean {
  const whole = new RegExp(`^(?:${regex})$`).test(userId);
  const prefix = new RegExp(`^(?:${regex})`).test(userId);
  expect(prefix).toBe(whole);
  return whole;
}

describe("buildRegistration", () => {
  it("carries the tenant's own tokens, id and runtime URL", () => {
    const registration = buildRegistration(homeserver(), PARAMETERS);
    expect(registration.id).toBe("switchboard-acme");
    expect(registration.as_token).toBe("as-token-of-acme-0123456789");
    expect(registration.hs_token).toBe("hs-token-of-acme-9876543210");
    expect(registration.url).toBe(`http://127.0.0.1:9000/tenants/${TENANT_ID}`);
    expect(registration.sender_localpart).toBe("switchboard");
    expect(registration.rate_limited).toBe(false);
    expect(registration["de.sorunome.msc2409.push_ephemeral"]).toBe(true);
    // No rooms or aliases are claimed (AppServiceRegistration omits the empty lists).
    expect(registration.namespaces.rooms as unknown[] | undefined).toBeUndefined();
    expect(registration.namespaces.aliases as unknown[] | undefined).toBeUndefined();
  });

  it("two tenants get different tokens and URLs", () => {
    const other = buildRegistration(
      homeserver({
        tenantId: "11111111-2222-4333-8444-555555555555" as TenantId,
        serverName: "other.test",
        registrationId: "switchboard-other",
        asToken: "as-other",
        hsToken: "hs-other",
      }),
      PARAMETERS,
    );
    const acme = buildRegistration(homeserver(), PARAMETERS);
    expect(other.as_token).not.toBe(acme.as_token);
    expect(other.hs_token).not.toBe(acme.hs_token);
    expect(other.url).toBe("http://127.0.0.1:9000/tenants/11111111-2222-4333-8444-555555555555");
  });

  it("drops trailing slashes from the runtime URL", () => {
    const registration = buildRegistration(homeserver(), {
      ...PARAMETERS,
      runtimeUrl: "https://runtime.example.org//",
    });
    expect(registration.url).toBe(`https://runtime.example.org/tenants/${TENANT_ID}`);
  });

  it("claims exactly the tenant's agents in an exclusive user namespace", () => {
    const regex = userRegex(buildRegistration(homeserver(), PARAMETERS));
    expect(claims(regex, "@ai_ada:acme.test")).toBe(true);
    expect(claims(regex, "@ai_bob.smith:acme.test")).toBe(true);
    expect(claims(regex, "@alice:acme.test")).toBe(false);
    expect(claims(regex, "@switchboardai_x:acme.test")).toBe(false);
    expect(claims(regex, "@ai_ada:other.test")).toBe(false);
  });

  it("claims exactly the relay account in a second exclusive namespace", () => {
    const relay = buildRegistration(homeserver(), PARAMETERS).namespaces.users[1];
    expect(relay?.exclusive).toBe(true);
    expect(claims(relay!.regex, "@switchboard-relay:acme.test")).toBe(true);
    expect(claims(relay!.regex, "@switchboard-relayx:acme.test")).toBe(false);
    expect(claims(relay!.regex, "@switchboard-relay:other.test")).toBe(false);
  });

  it("escapes the dots of the server name", () => {
    const regex = userRegex(
      buildRegistration(homeserver({ serverName: "chat.acme.test" }), PARAMETERS),
    );
    expect(regex).toContain("chat\\.acme\\.test");
    expect(claims(regex, "@ai_ada:chat.acme.test")).toBe(true);
    expect(claims(regex, "@ai_ada:chatXacme.test")).toBe(false);
    expect(claims(regex, "@ai_ada:chat.acmeYtest")).toBe(false);
  });

  it("escapes a server name with a port", () => {
    const regex = userRegex(
      buildRegistration(homeserver({ serverName: "localhost:8448" }), PARAMETERS),
    );
    expect(claims(regex, "@ai_ada:localhost:8448")).toBe(true);
    expect(claims(regex, "@ai_ada:localhost")).toBe(false);
  });

  it("escapes regex characters in the agent prefix", () => {
    const regex = userRegex(
      buildRegistration(homeserver(), { ...PARAMETERS, agentPrefix: "bot.x_" }),
    );
    expect(claims(regex, "@bot.x_ada:acme.test")).toBe(true);
    expect(claims(regex, "@botYx_ada:acme.test")).toBe(false);
  });

  it("uses the configured bot localpart", () => {
    expect(
      buildRegistration(homeserver(), { ...PARAMETERS, botLocalpart: "acme-bot" }).sender_localpart,
    ).toBe("acme-bot");
  });
});

describe("registrationToYaml", () => {
  it("round-trips through YAML unchanged", () => {
    const registration = buildRegistration(
      homeserver({ serverName: "chat.acme.test" }),
      PARAMETERS,
    );
    const yaml = registrationToYaml(registration);
    const parsed = parse(yaml) as RegistrationDocument;
    expect(parsed).toEqual(registration);
    // The escaped regex survives as the same string, backslashes included.
    expect(parsed.namespaces.users[0]?.regex).toBe(registration.namespaces.users[0]?.regex);
    expect(yaml).toContain("hs-token-of-acme-9876543210");
    expect(yaml).toContain("as-token-of-acme-0123456789");
  });

  it("has the fields Synapse requires", () => {
    const parsed = parse(registrationToYaml(buildRegistration(homeserver(), PARAMETERS))) as Record<
      string,
      unknown
    >;
    for (const field of ["id", "url", "as_token", "hs_token", "sender_localpart", "namespaces"]) {
      expect(parsed).toHaveProperty(field);
    }
  });
});
