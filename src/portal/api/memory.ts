import { z } from "zod";
import type { BrowsedFact, PersonSummary } from "../../memory/browse.ts";
import type { PersonDetails } from "../../memory/service.ts";
import { MAX_SEARCH_CHARS } from "../../memory/service.ts";
import type { Actor } from "../../audit/audit-log.ts";
import { badRequest, conflict, notFound } from "../../shared/errors.ts";
import { isMatrixUserId, type TenantId } from "../../shared/ids.ts";
import { requireRole } from "../access.ts";
import { PageQuery, decodeCursor, pageOf, toPage, type Page } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

export const PersonParams = TenantParams.extend({ personId: z.string().max(64) });
const FactParams = TenantParams.extend({ factId: z.string().max(64) });
const IdentityParams = PersonParams.extend({
  userId: z.string().max(255).describe("the Matrix ID to separate (URL-encoded)"),
});
export const IdentityBody = z.object({
  userId: z
    .string()
    .max(255)
    .describe("a Matrix user ID to make theirs, e.g. a bridge ghost like @telegram_42:example.org"),
});
export const SearchQuery = z.object({
  q: z.string().max(MAX_SEARCH_CHARS),
  limit: PageQuery.shape.limit,
});

export const PersonView = z.object({
  id: z.string(),
  displayName: z.string().nullable(),
  matrixUserIds: z
    .array(z.string())
    .describe("the person's linked Matrix IDs (bridged ghosts included)"),
  factCount: z.number().int().describe("current facts about the person"),
  createdAt: z.string().describe("ISO 8601: when an agent first met them"),
});
export type PersonView = z.infer<typeof PersonView>;

export const FactView = z.object({
  id: z.string(),
  content: z.string(),
  key: z.string().nullable(),
  source: z.enum(["explicit", "tool", "extraction", "admin"]).describe("how it was learned"),
  agent: z.string().nullable().describe("the agent holding it privately; null when shared"),
  personId: z.string().nullable().describe("who it is about, if about a person"),
  sourceRoomId: z.string().nullable(),
  sourceEventId: z.string().nullable(),
  validFrom: z.string().describe("ISO 8601"),
});
export type FactView = z.infer<typeof FactView>;

const PersonDetailsView = PersonView.omit({ factCount: true }).extend({
  identities: z.array(
    z.object({
      userId: z.string(),
      platform: z.enum(["matrix", "slack", "discord", "telegram"]),
      linkedAt: z.string().describe("ISO 8601: when this ID became theirs"),
    }),
  ),
});
type PersonDetailsView = z.infer<typeof PersonDetailsView>;

const PersonWithFacts = z.object({ person: PersonDetailsView, facts: pageOf(FactView) });
const LinkResult = z.object({
  person: PersonDetailsView.describe(
    "the person now owning the ID: when two people merge, the older one survives, so its id may differ from the URL's",
  ),
});
const UnlinkResult = z.object({
  person: PersonDetailsView.describe("the person, without the ID"),
  unlinked: z.object({
    userId: z.string(),
    personId: z.string().describe("the person of its own the ID now is"),
  }),
});

export function personView(summary: PersonSummary): PersonView {
  return {
    id: summary.id,
    displayName: summary.displayName,
    matrixUserIds: [...summary.userIds],
    factCount: summary.factCount,
    createdAt: summary.createdAt.toISOString(),
  };
}

export function factView(browsed: BrowsedFact): FactView {
  const { fact } = browsed;
  return {
    id: fact.id,
    content: fact.content,
    key: fact.key,
    source: fact.source,
    agent: browsed.agentName,
    personId: browsed.personId,
    sourceRoomId: fact.sourceRoomId,
    sourceEventId: fact.sourceEventId,
    validFrom: fact.validFrom.toISOString(),
  };
}

export async function peoplePage(
  deps: PortalDeps,
  tenantId: TenantId,
  query: PageQuery,
): Promise<Page<PersonView>> {
  const rows = await deps.memory.people(tenantId, {
    limit: query.limit,
    after: decodeCursor(query.cursor, "string"),
  });
  return mapPage(
    toPage(rows, query.limit, (row) => row.position),
    personView,
  );
}

export async function personWithFacts(
  deps: PortalDeps,
  tenantId: TenantId,
  personId: string,
  query: PageQuery,
): Promise<{ details: PersonDetails; facts: Page<FactView> }> {
  const details = await deps.memory.person(tenantId, personId);
  const rows = await deps.memory.factsOfPerson(tenantId, personId, {
    limit: query.limit,
    after: decodeCursor(query.cursor, "string"),
  });
  return {
    details,
    facts: mapPage(
      toPage(rows, query.limit, (row) => row.position),
      factView,
    ),
  };
}

export function personDetailsView(details: PersonDetails): PersonDetailsView {
  return {
    id: details.person.id,
    displayName: details.person.displayName,
    matrixUserIds: details.identities.map((identity) => identity.userId),
    createdAt: details.person.createdAt.toISOString(),
    identities: details.identities.map((identity) => ({
      userId: identity.userId,
      platform: identity.platform,
      linkedAt: identity.linkedAt.toISOString(),
    })),
  };
}

function mapPage<T, U>(page: Page<T>, map: (item: T) => U): Page<U> {
  return { items: page.items.map(map), nextCursor: page.nextCursor };
}

/** A safe file name for a person's export. */
export function exportFileName(personId: string): string {
  return `memory-${personId.replace(/[^a-zA-Z0-9-]/g, "")}.json`;
}

/** Memory over JSON: members browse and search; admins export and forget. */
export function memoryApi(app: PortalApp, deps: PortalDeps): void {
  app.get(
    "/api/v1/tenants/:tenantId/memory/people",
    {
      schema: {
        tags: ["memory"],
        summary: "People the agents know, newest first, with their Matrix IDs and fact counts",
        params: TenantParams,
        querystring: PageQuery,
        response: { 200: pageOf(PersonView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      const page = await peoplePage(deps, tenant.id, request.query);
      return { items: [...page.items], nextCursor: page.nextCursor };
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/memory/people/:personId",
    {
      schema: {
        tags: ["memory"],
        summary: "A person and the current facts about them, newest first",
        params: PersonParams,
        querystring: PageQuery,
        response: { 200: PersonWithFacts },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      const { details, facts } = await personWithFacts(
        deps,
        tenant.id,
        request.params.personId,
        request.query,
      );
      return {
        person: personDetailsView(details),
        facts: { items: [...facts.items], nextCursor: facts.nextCursor },
      };
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/memory/people/:personId/export",
    {
      schema: {
        tags: ["memory"],
        summary:
          "Everything held about a person (identities, facts past and present with provenance, messages) as JSON (admins; audited)",
        params: PersonParams,
        response: { 200: z.record(z.string(), z.unknown()) },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      const exported = await deps.memory.exportPerson(tenant.id, request.params.personId, actor);
      void reply.header(
        "content-disposition",
        `attachment; filename="${exportFileName(request.params.personId)}"`,
      );
      return { ...exported };
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/memory/facts/:factId",
    {
      schema: {
        tags: ["memory"],
        summary: "Forget one current fact (admins); it stays in exports as a past fact",
        params: FactParams,
        response: { 204: z.null() },
      },
    },
    async (request, reply) => {
      const { tenant, actor } = requireRole(request, "admin");
      await forgetFactOrNotFound(deps, tenant.id, request.params.factId, actor);
      return reply.code(204).send(null);
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/memory/people/:personId/facts",
    {
      schema: {
        tags: ["memory"],
        summary: "Erase every fact about a person, past ones too (admins)",
        params: PersonParams,
        response: { 200: z.object({ erased: z.number().int() }) },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "admin");
      return { erased: await deps.memory.forgetPerson(tenant.id, request.params.personId, actor) };
    },
  );

  app.post(
    "/api/v1/tenants/:tenantId/memory/people/:personId/identities",
    {
      schema: {
        tags: ["memory"],
        summary:
          "Link a Matrix ID (e.g. their Slack, Discord or Telegram ghost) to a person, merging its person's facts and history into theirs (admins; audited)",
        params: PersonParams,
        body: IdentityBody,
        response: { 200: LinkResult },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "admin");
      const details = await linkIdentityOf(
        deps,
        tenant.id,
        request.params.personId,
        request.body.userId,
        actor,
      );
      return { person: personDetailsView(details) };
    },
  );

  app.delete(
    "/api/v1/tenants/:tenantId/memory/people/:personId/identities/:userId",
    {
      schema: {
        tags: ["memory"],
        summary:
          "Make one of a person's Matrix IDs a person of its own again; the facts stay with this person, the ID's messages go with it (admins; audited)",
        params: IdentityParams,
        response: { 200: UnlinkResult },
      },
    },
    async (request) => {
      const { tenant, actor } = requireRole(request, "admin");
      const { userId, personId } = request.params;
      const result = await unlinkIdentityOf(deps, tenant.id, personId, userId, actor);
      return {
        person: personDetailsView(result.details),
        unlinked: { userId, personId: result.unlinkedPersonId },
      };
    },
  );

  app.get(
    "/api/v1/tenants/:tenantId/memory/search",
    {
      schema: {
        tags: ["memory"],
        summary:
          "Current facts containing every word of q (English stemming), best match first; one page of at most limit",
        params: TenantParams,
        querystring: SearchQuery,
        response: { 200: pageOf(FactView) },
      },
    },
    async (request) => {
      const { tenant } = requireRole(request, "member");
      const found = await deps.memory.search(tenant.id, request.query.q, request.query.limit);
      return { items: found.map(factView), nextCursor: null };
    },
  );
}

/** A fact that is not (or no longer) current in this tenant is not found. */
export async function forgetFactOrNotFound(
  deps: PortalDeps,
  tenantId: TenantId,
  factId: string,
  actor: Actor,
): Promise<void> {
  const forgotten = await deps.memory.forgetFact(tenantId, factId, actor);
  if (!forgotten) throw notFound("fact");
}

/**
 * Makes `userId` an identity of the person, as `person link` does (the
 * person's first identity linked with it, so facts and history merge), and
 * returns the person who owns it afterwards: the older of the two when it
 * belonged to someone else. Refuses before writing anything: an unknown
 * person (404), a value that is no Matrix ID (400), an ID already theirs (409).
 */
export async function linkIdentityOf(
  deps: PortalDeps,
  tenantId: TenantId,
  personId: string,
  userId: string,
  actor: Actor,
): Promise<PersonDetails> {
  const { identities } = await deps.memory.person(tenantId, personId);
  const id = userIdOrBadRequest(userId);
  if (identities.some((identity) => identity.userId === id))
    throw conflict(`${id} is already one of this person's identities`);
  const anchor = identities[0];
  // Every person is created with an identity and unlinking keeps the last one; none left is a bug.
  if (anchor === undefined) throw conflict("this person has no identity to link to");
  const survivor = await deps.memory.link(tenantId, anchor.userId, id, actor);
  return deps.memory.person(tenantId, survivor);
}

/**
 * Splits one of the person's IDs off into a person of its own (as
 * `person unlink`). Refuses before writing anything: an unknown person or an
 * ID that is not theirs (404), a value that is no Matrix ID (400), their last
 * identity (409: a person without one could never be found again).
 */
export async function unlinkIdentityOf(
  deps: PortalDeps,
  tenantId: TenantId,
  personId: string,
  userId: string,
  actor: Actor,
): Promise<{ details: PersonDetails; unlinkedPersonId: string }> {
  const { person, identities } = await deps.memory.person(tenantId, personId);
  const id = userIdOrBadRequest(userId);
  if (!identities.some((identity) => identity.userId === id)) throw notFound("identity");
  if (identities.length <= 1)
    throw conflict(`${id} is this person's only identity; there is nothing to unlink it from`);
  const unlinkedPersonId = await deps.memory.unlink(tenantId, id, actor);
  return { details: await deps.memory.person(tenantId, person.id), unlinkedPersonId };
}

function userIdOrBadRequest(value: string): string {
  const trimmed = value.trim();
  if (!isMatrixUserId(trimmed))
    throw badRequest(
      `userId: "${trimmed.slice(0, 80)}" is not a Matrix user ID like @alice:example.org or a bridge ghost like @telegram_42:example.org`,
    );
  return trimmed;
}
