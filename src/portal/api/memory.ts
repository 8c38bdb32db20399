import { z } from "zod";
import type { BrowsedFact, PersonSummary } from "../../memory/browse.ts";
import type { PersonDetails } from "../../memory/service.ts";
import { MAX_SEARCH_CHARS } from "../../memory/service.ts";
import type { Actor } from "../../audit/audit-log.ts";
import { notFound } from "../../shared/errors.ts";
import type { TenantId } from "../../shared/ids.ts";
import { requireRole } from "../access.ts";
import { PageQuery, decodeCursor, pageOf, toPage, type Page } from "../pagination.ts";
import type { PortalApp, PortalDeps } from "../types.ts";
import { TenantParams } from "./usage.ts";

export const PersonParams = TenantParams.extend({ personId: z.string().max(64) });
const FactParams = TenantParams.extend({ factId: z.string().max(64) });
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

const PersonWithFacts = z.object({
  person: PersonView.omit({ factCount: true }).extend({
    identities: z.array(
      z.object({ userId: z.string(), platform: z.string(), linkedAt: z.string() }),
    ),
  }),
  facts: pageOf(FactView),
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
        person: {
          id: details.person.id,
          displayName: details.person.displayName,
          matrixUserIds: details.identities.map((identity) => identity.userId),
          createdAt: details.person.createdAt.toISOString(),
          identities: details.identities.map((identity) => ({
            userId: identity.userId,
            platform: identity.platform,
            linkedAt: identity.linkedAt.toISOString(),
          })),
        },
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
