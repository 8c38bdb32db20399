import { badRequest } from "../shared/errors.ts";
import { decodeCursor, toPage, type Page, type PageQuery } from "./pagination.ts";

/**
 * Pages of short lists (members, invitations, keys, tokens, an account's
 * tenants) by position: the cursor stands for how many rows came before.
 * Fetch `limit + 1` rows from offsetOf(query), then cut with offsetPage.
 */
export function offsetOf(query: PageQuery): number {
  const offset = decodeCursor(query.cursor, "number") ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw badRequest("cursor: not a cursor from a previous page");
  return offset;
}

export function offsetPage<T>(rows: readonly T[], query: PageQuery): Page<T> {
  const offset = offsetOf(query);
  return toPage(rows, query.limit, () => offset + query.limit);
}

/** A page of a list that is read whole (a tenant's keys and tokens: a handful each). */
export function slicePage<T>(all: readonly T[], query: PageQuery): Page<T> {
  const offset = offsetOf(query);
  return offsetPage(all.slice(offset, offset + query.limit + 1), query);
}
