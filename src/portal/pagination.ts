import { z } from "zod";
import { badRequest } from "../shared/errors.ts";

export const MAX_PAGE_SIZE = 100;

/** ?limit=&cursor= on every list route; the cursor is opaque to clients. */
export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(50),
  cursor: z.string().max(512).optional(),
});
export type PageQuery = z.infer<typeof PageQuery>;

/** A page of a list, in the API's shape. */
export interface Page<T> {
  readonly items: readonly T[];
  /** Pass as ?cursor= for the next page; null on the last page. */
  readonly nextCursor: string | null;
}

/** The JSON Schema of a page of items, for route response schemas. */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

export function encodeCursor(position: string | number): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

/** The position a cursor stands for; a cursor that was not made by us is a 400. */
export function decodeCursor(cursor: string | undefined, kind: "string"): string | undefined;
export function decodeCursor(cursor: string | undefined, kind: "number"): number | undefined;
export function decodeCursor(
  cursor: string | undefined,
  kind: "string" | "number",
): string | number | undefined {
  if (cursor === undefined || cursor === "") return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (typeof value === kind) return value as string | number;
  } catch {
    // Falls through to the error below.
  }
  throw badRequest("cursor: not a cursor from a previous page");
}

/**
 * Cuts a list fetched with limit + 1 rows into a page: the extra row only
 * says that there is more.
 */
export function toPage<T>(
  rows: readonly T[],
  limit: number,
  positionOf: (row: T) => string | number,
): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null,
  };
}
