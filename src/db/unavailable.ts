import type { Knex } from "knex";
import { AppError, isAppError } from "../shared/errors.ts";

/**
 * Telling "the database is unreachable" apart from a bug: callers answer the
 * first with 503 (portal) or a later retry (runtime), the second with 500.
 * The message is the same everywhere and names no host, port or user.
 */
export const DATABASE_UNAVAILABLE_MESSAGE =
  "the database is unavailable right now; try again in a moment";

/** SQLSTATEs of a server that is going away or refusing connections (classes 08 and 57P, and 53300). */
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[123]|53300)$/;

/**
 * What pg says when a connection dies under a query or a pooled client is
 * used after it died; knex puts the SQL and " - " in front.
 */
const LOST_CONNECTION_MESSAGE =
  /(^| - )(Connection terminated|Connection ended unexpectedly|Client has encountered a connection error)/;

export function databaseUnavailable(cause: unknown): AppError {
  return new AppError("unavailable", DATABASE_UNAVAILABLE_MESSAGE, { cause });
}

/** True for errors that mean the database could not be reached or went away mid-query. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (isAppError(error))
    return error.code === "unavailable" && error.message === DATABASE_UNAVAILABLE_MESSAGE;
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && UNAVAILABLE_SQLSTATE.test(code)) return true;
  return LOST_CONNECTION_MESSAGE.test(error.message);
}

/**
 * Makes every failure to get a connection (refused, reset, timed out, the
 * server shutting down) reject with databaseUnavailable(), whoever asked:
 * root queries and transactions both acquire through the root client.
 */
export function reportUnavailableConnections(db: Knex): void {
  const client = db.client as { acquireConnection: () => Promise<unknown> };
  const acquire = client.acquireConnection.bind(client);
  client.acquireConnection = () =>
    acquire().catch((error: unknown) => {
      // The transaction guard's refusal is a bug report, not an outage.
      if (isAppError(error)) throw error;
      throw databaseUnavailable(error);
    });
}
