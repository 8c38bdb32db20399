import { mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sqliteHomeserverDatabases } from "../../src/provisioning/homeserver-database-backup.ts";

const TENANT = { id: "00000000-0000-4000-8000-000000000001", slug: "acme" };

function rows(path: string): string[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("select body from events order by id").all() as { body: string }[]).map(
      (row) => row.body,
    );
  } finally {
    db.close();
  }
}

describe("SQLite homeserver database backups", () => {
  let root: string;
  let live: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "switchboard-hsdb-"));
    await mkdir(join(root, "homeservers", "acme"), { recursive: true });
    live = join(root, "homeservers", "acme", "homeserver.db");
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("dumps a consistent copy while a writer holds the database open in WAL mode, and restores it", async () => {
    // Like Synapse: a long-lived connection in WAL mode, with commits still in the WAL.
    const writer = new DatabaseSync(live);
    writer.exec(
      "pragma journal_mode = wal; create table events (id integer primary key, body text)",
    );
    writer.prepare("insert into events (body) values (?)").run("hello");
    writer.prepare("insert into events (body) values (?)").run("world");
    const backups = sqliteHomeserverDatabases(join(root, "homeservers"));
    const out = join(root, "backup");
    await mkdir(out);
    expect(await backups.dump(TENANT, out)).toBe("homeserver.db");
    expect(rows(join(out, "homeserver.db"))).toEqual(["hello", "world"]);
    expect((await stat(join(out, "homeserver.db"))).mode & 0o777).toBe(0o600);

    writer.prepare("insert into events (body) values (?)").run("after the backup");
    writer.close();
    expect(rows(live)).toEqual(["hello", "world", "after the backup"]);
    await backups.restore(TENANT, join(out, "homeserver.db"));
    // The old database's journal files are gone with it (SQLite would replay them).
    expect(await readdir(join(root, "homeservers", "acme"))).toEqual(["homeserver.db"]);
    expect(rows(live)).toEqual(["hello", "world"]);
  });

  it("has nothing to dump for a tenant without a database", async () => {
    const backups = sqliteHomeserverDatabases(join(root, "homeservers"));
    expect(await backups.dump({ ...TENANT, slug: "nobody" }, root)).toBeNull();
  });
});
