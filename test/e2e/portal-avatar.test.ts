import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TenantId } from "../../src/shared/ids.ts";
import { seedTenant } from "../support/ops-fixtures.ts";
import { startPortalTest, type Browser, type PortalTest } from "../support/portal.ts";
import { startTestHomeserver, type TestHomeserver, type TestUser } from "../support/synapse.ts";

const PNG_1X1 = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  "base64",
);
const GIF_1X1 = Buffer.from("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7", "base64");

/**
 * Avatar upload against a real Synapse: the portal stores the image in the
 * tenant's homeserver media repository as the agent (registering it on
 * first use) and sets it on the agent's Matrix profile.
 */
describe("agent avatar upload (real Synapse)", () => {
  let t: PortalTest;
  let homeserver: TestHomeserver;
  let owner: Browser;
  let viewer: TestUser;
  let acme: { id: TenantId; slug: string };
  let agentId: string;

  async function matrix(path: string): Promise<Response> {
    return fetch(`${homeserver.clientUrl}${path}`, {
      headers: { authorization: `Bearer ${viewer.accessToken}` },
    });
  }

  async function profileAvatar(): Promise<string | undefined> {
    const response = await matrix(`/_matrix/client/v3/profile/${encodeURIComponent(agentId)}`);
    expect(response.status).toBe(200);
    return ((await response.json()) as { avatar_url?: string }).avatar_url;
  }

  async function download(mxcUrl: string): Promise<Buffer> {
    const [, serverName, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxcUrl) ?? [];
    const response = await matrix(
      `/_matrix/client/v1/media/download/${serverName ?? ""}/${mediaId ?? ""}`,
    );
    expect(response.status).toBe(200);
    return Buffer.from(await response.arrayBuffer());
  }

  beforeAll(async () => {
    t = await startPortalTest();
    owner = await t.signedIn("owner@example.org");
    acme = await seedTenant(t, "acme", [{ browser: owner, role: "owner" }]);
    const registered = await t.app.tenantRepository.findHomeserver(t.app.database.knex, acme.id);
    if (registered === undefined) throw new Error("the tenant has no homeserver record");
    homeserver = await startTestHomeserver({
      serverName: registered.serverName,
      appserviceRegistrations: { "switchboard.yaml": t.app.registrationYaml(registered) },
    });
    await t.app.tenantRepository.updateHomeserverUrl(
      t.app.database.knex,
      acme.id,
      homeserver.clientUrl,
    );
    viewer = await homeserver.registerUser("viewer");
    await t.app.agents.create(acme.id, { name: "ada" }, { id: "test", via: "cli" });
    agentId = `@${t.config.runtime.agentPrefix}ada:${registered.serverName}`;
  }, 120_000);
  afterAll(async () => {
    await homeserver.stop();
    await t.stop();
  });

  it("uploads a PNG through the API as the agent and shows it on the agent's profile", async () => {
    const response = await owner.request(`/api/v1/tenants/${acme.id}/agents/ada/avatar`, {
      method: "PUT",
      body: PNG_1X1,
      headers: { "content-type": "image/png", "x-csrf-token": await owner.csrfToken() },
    });
    expect(response.statusCode, response.body).toBe(200);
    const { avatarUrl } = response.json() as { avatarUrl: string };
    expect(avatarUrl).toMatch(new RegExp(`^mxc://${homeserver.serverName}/[A-Za-z0-9_-]+$`));
    expect((await t.app.agents.get(acme.id, "ada")).avatarUrl).toBe(avatarUrl);
    expect(await profileAvatar()).toBe(avatarUrl);
    expect((await download(avatarUrl)).equals(PNG_1X1)).toBe(true);
  });

  it("replaces it from the page's multipart form, judging the type by the bytes", async () => {
    const before = (await t.app.agents.get(acme.id, "ada")).avatarUrl;
    const boundary = "----avatar-boundary";
    const form = (bytes: Buffer): Buffer =>
      Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="avatar"; filename="me.png"\r\nContent-Type: image/png\r\n\r\n`,
        ),
        bytes,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
    const action = `/t/acme/agents/ada/avatar?_csrf=${encodeURIComponent(await owner.csrfToken())}`;
    const headers = { "content-type": `multipart/form-data; boundary=${boundary}` };
    // Claimed to be a PNG, but HTML: refused before anything reaches the homeserver.
    const html = await owner.request(action, { body: form(Buffer.from("<html></html>")), headers });
    expect(html.statusCode).toBe(400);
    expect((await t.app.agents.get(acme.id, "ada")).avatarUrl).toBe(before);

    // Claimed to be a PNG, really a GIF: stored as what it is.
    const gif = await owner.request(action, { body: form(GIF_1X1), headers });
    expect(gif.statusCode, gif.body).toBe(303);
    const after = (await t.app.agents.get(acme.id, "ada")).avatarUrl;
    expect(after).not.toBe(before);
    expect(after).not.toBeNull();
    expect(await profileAvatar()).toBe(after);
    const media = await matrix(
      `/_matrix/client/v1/media/download/${homeserver.serverName}/${(after ?? "").split("/").pop() ?? ""}`,
    );
    expect(media.headers.get("content-type")).toBe("image/gif");
  });
});
