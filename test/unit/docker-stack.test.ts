import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  LABEL,
  containerBody,
  homeserverFiles,
  resourceLimits,
  stackNames,
} from "../../src/provisioning/docker-stack.ts";
import type { HomeserverSpec } from "../../src/provisioning/driver.ts";
import { scramVerifier } from "../../src/provisioning/tenant-database.ts";
import type { TenantId } from "../../src/shared/ids.ts";

const spec: HomeserverSpec = {
  tenantId: "00000000-0000-4000-8000-000000000001" as TenantId,
  slug: "acme",
  serverName: "acme.example.com",
  resources: { memoryMb: 1024, cpus: 1.5 },
  registrationSharedSecret: "a-shared-secret-of-enough-length",
  appserviceRegistrations: { "switchboard.yaml": "id: switchboard\n" },
  database: "sqlite",
};
const templates = {
  homeserverYaml: "server_name: x\nlisteners:\n  - port: 1\n",
  logYaml: "version: 1\n",
};

function specHash(input: HomeserverSpec): string | undefined {
  const body = containerBody(
    input,
    "img:1",
    "shared",
    homeserverFiles(input, templates, undefined),
  );
  return (body.Labels as Record<string, string>)[LABEL.specHash];
}

describe("docker stack description", () => {
  it("names resources from the slug and refuses slugs that are not DNS-safe", () => {
    expect(stackNames("acme-2")).toEqual({
      network: "switchboard-acme-2",
      volume: "switchboard-acme-2-data",
      container: "switchboard-acme-2-synapse",
      database: "synapse_acme_2",
    });
    for (const bad of ["", "Acme", "-acme", "acme-", "a_b", "a/b", "x".repeat(49)]) {
      expect(() => stackNames(bad)).toThrow(/slug/);
    }
  });

  it("turns plan resources into engine limits without swap", () => {
    expect(resourceLimits({ memoryMb: 512, cpus: 0.5 })).toEqual({
      Memory: 536_870_912,
      MemorySwap: 536_870_912,
      NanoCpus: 500_000_000,
    });
  });

  it("keeps the spec hash across resource changes and changes it with files or image", () => {
    const base = specHash(spec);
    expect(specHash({ ...spec, resources: { memoryMb: 4096, cpus: 4 } })).toBe(base);
    expect(
      specHash({ ...spec, appserviceRegistrations: { "switchboard.yaml": "id: other\n" } }),
    ).not.toBe(base);
    expect(specHash({ ...spec, registrationSharedSecret: "another-shared-secret-long" })).not.toBe(
      base,
    );
    expect(specHash(spec)).toBe(base);
  });

  it("derives the same secrets every time (a recreated container keeps tokens valid)", () => {
    const first = homeserverFiles(spec, templates, undefined);
    const second = homeserverFiles(spec, templates, undefined);
    expect(second).toEqual(first);
    const config = first.find((f) => f.name === "homeserver.yaml")?.content ?? "";
    expect(config).toMatch(/macaroon_secret_key: \S{40,}/);
    expect(config).toContain("public_baseurl: http://switchboard-acme-synapse:8008/");
    expect(config).toContain("bind_addresses: [ 0.0.0.0 ]");
  });
});

describe("scramVerifier", () => {
  it("matches the SCRAM-SHA-256 test vector of RFC 7677", () => {
    const salt = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
    const verifier = scramVerifier("pencil", salt);
    const match = /^SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)$/.exec(verifier);
    expect(match?.[1]).toBe("W22ZaJ0SNY7soEsUEjb6gQ==");
    const storedKey = Buffer.from(match?.[2] ?? "", "base64");
    const serverKey = Buffer.from(match?.[3] ?? "", "base64");
    const nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const authMessage = `n=user,r=rOprNGfwEbeRWgbNEkqO,r=${nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=${nonce}`;
    expect(createHmac("sha256", serverKey).update(authMessage).digest("base64")).toBe(
      "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
    const clientSignature = createHmac("sha256", storedKey).update(authMessage).digest();
    const proof = Buffer.from("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "base64");
    const clientKey = Buffer.from(proof.map((byte, i) => byte ^ (clientSignature[i] ?? 0)));
    expect(createHash("sha256").update(clientKey).digest().equals(storedKey)).toBe(true);
  });
});
