/**
 * Typed identifiers: one brand per noun so that a TenantId can never be passed
 * where an AgentId is expected. They are plain strings at run time.
 */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type TenantId = Brand<string, "TenantId">;
export type AgentId = Brand<string, "AgentId">;
export type PersonId = Brand<string, "PersonId">;
export type FactId = Brand<string, "FactId">;
/** A full Matrix user ID, e.g. `@alice:example.org`. */
export type MatrixUserId = Brand<string, "MatrixUserId">;
/** A Matrix room ID, e.g. `!abc:example.org`. */
export type RoomId = Brand<string, "RoomId">;
/** A Matrix event ID, e.g. `$abc`. */
export type EventId = Brand<string, "EventId">;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

const MATRIX_USER_ID_PATTERN = /^@[a-z0-9._=\-/+]+:[a-zA-Z0-9.\-[\]:]+$/;

/** True for a syntactically valid (historical-grammar tolerant) Matrix user ID. */
export function isMatrixUserId(value: string): value is MatrixUserId {
  return value.length <= 255 && MATRIX_USER_ID_PATTERN.test(value);
}

export function serverNameOf(userId: MatrixUserId): string {
  return userId.slice(userId.indexOf(":") + 1);
}

export function localpartOf(userId: MatrixUserId): string {
  return userId.slice(1, userId.indexOf(":"));
}
