import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { AppError } from "../shared/errors.ts";

export const MANIFEST_FILE = "manifest.json";

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * manifest.json: what a backup directory holds. Written last, so its
 * presence means the backup completed; every file is checked against its
 * size and SHA-256 before a restore touches anything.
 */
const ManifestSchema = z.strictObject({
  format: z.literal("switchboard-tenant-backup"),
  version: z.literal(1),
  tenant: z.strictObject({ id: z.uuid(), slug: z.string().min(1).max(100) }),
  createdAt: z.iso.datetime(),
  /** The newest migration when the backup was made. */
  schema: z.string().min(1).max(200),
  switchboardVersion: z.string().max(100),
  rowCounts: z.record(z.string(), z.number().int().min(0)),
  files: z
    .array(
      z.strictObject({
        // A plain name inside the backup directory, never a path.
        name: z
          .string()
          .regex(/^[A-Za-z0-9._-]+$/)
          .refine((name) => name !== "." && name !== ".."),
        kind: z.enum(["switchboard-data", "homeserver-database"]),
        /** "json" for the data file; the homeserver database's kind ("sqlite"). */
        format: z.string().min(1).max(50),
        bytes: z.number().int().min(0),
        sha256: sha256Hex,
      }),
    )
    .min(1),
});

export type BackupManifest = z.infer<typeof ManifestSchema>;

export async function writeManifest(dir: string, manifest: BackupManifest): Promise<void> {
  await writeFile(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, {
    mode: 0o600,
  });
}

/** Reads and validates a backup directory's manifest; bad_request naming the problem otherwise. */
export async function readManifest(dir: string): Promise<BackupManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), "utf8");
  } catch {
    throw new AppError("bad_request", `${dir} is not a backup: it has no ${MANIFEST_FILE}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AppError("bad_request", `the backup's ${MANIFEST_FILE} is not valid JSON`);
  }
  const result = ManifestSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new AppError(
      "bad_request",
      `the backup's ${MANIFEST_FILE} is invalid at ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "unknown"}`,
    );
  }
  return result.data;
}
