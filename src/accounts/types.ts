import type { Brand } from "../shared/ids.ts";

export type AccountId = Brand<string, "AccountId">;

/** A person who signs in to the portal. Never carries the password hash. */
export interface Account {
  readonly id: AccountId;
  /** Lowercased. */
  readonly email: string;
  readonly displayName: string;
  readonly emailVerified: boolean;
  /** Platform operators see the admin area. */
  readonly isOperator: boolean;
  readonly createdAt: Date;
}
