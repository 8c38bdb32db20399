import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createMailer,
  readOutbox,
  readOutboxMail,
  type OutboxMail,
} from "../../src/accounts/mailer.ts";
import { AppError } from "../../src/shared/errors.ts";
import { createLogger, type Logger } from "../../src/shared/logger.ts";

const FROM = "Switchboard <noreply@switchboard.test>";
const silent = { level: "silent", pretty: false } as const;
const SECRET_LINK = "https://switchboard.test/verify?token=s3cr3t-verification-token";

/** A logger whose JSON lines a test can read back. */
function capturingLogger(): { log: Logger; lines: () => string[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString("utf8"));
      done();
    },
  });
  const log = createLogger({ level: "debug", pretty: false, destination: sink });
  return { log, lines: () => chunks.join("").split("\n").filter(Boolean) };
}

let root: string;
let outboxDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "switchboard-mailer-"));
  outboxDir = join(root, "outbox");
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("outbox mailer", () => {
  it("writes each mail as a private JSON file and reads them back newest first", async () => {
    const { log, lines } = capturingLogger();
    const mailer = createMailer({ from: FROM, outboxDir, log });
    await mailer.send({ to: "Ada@Example.ORG", subject: "first", text: `Verify: ${SECRET_LINK}` });
    await mailer.send({ to: "bob@example.net", subject: "second", text: "two", html: "<p>2</p>" });
    await mailer.send({ to: "carol@example.com", subject: "third", text: "three" });

    const mails = await readOutbox(outboxDir, 10);
    expect(mails.map((mail) => mail.subject)).toEqual(["third", "second", "first"]);
    const [third, second, first] = mails as [OutboxMail, OutboxMail, OutboxMail];
    expect(first).toEqual({
      id: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z-[0-9a-f]{16}$/),
      to: "Ada@Example.ORG",
      from: FROM,
      subject: "first",
      text: `Verify: ${SECRET_LINK}`,
      createdAt: expect.any(String),
    });
    expect(first.id.startsWith(first.createdAt)).toBe(true);
    expect(second.html).toBe("<p>2</p>");
    expect("html" in third).toBe(false);
    expect(new Set(mails.map((mail) => mail.id)).size).toBe(3);

    expect(await readOutboxMail(outboxDir, second.id)).toEqual(second);
    expect((await readdir(outboxDir)).sort()).toEqual(mails.map((m) => `${m.id}.json`).sort());
    expect((await stat(join(outboxDir, `${first.id}.json`))).mode & 0o777).toBe(0o600);
    expect((await stat(outboxDir)).mode & 0o777).toBe(0o700);

    const logged = lines();
    expect(logged).toHaveLength(3);
    expect(JSON.parse(logged[0]!)).toMatchObject({
      module: "mailer",
      toDomain: "example.org",
      subject: "first",
      outboxId: first.id,
    });
    const everything = logged.join("\n");
    expect(everything).not.toContain("s3cr3t");
    expect(everything).not.toContain("Ada@");
    expect(everything).not.toContain("<p>2</p>");
  });

  it("returns at most `limit` mails, the newest", async () => {
    const mailer = createMailer({ from: FROM, outboxDir, log: createLogger(silent) });
    for (const subject of ["a", "b", "c", "d"]) {
      await mailer.send({ to: "x@example.org", subject, text: subject });
    }
    expect((await readOutbox(outboxDir, 2)).map((mail) => mail.subject)).toEqual(["d", "c"]);
    expect(await readOutbox(outboxDir, 0)).toEqual([]);
    expect(await readOutbox(outboxDir, -1)).toEqual([]);
    expect(await readOutbox(outboxDir, Number.NaN)).toEqual([]);
  });

  it("skips garbage files, even ones named like newer mails", async () => {
    const mailer = createMailer({ from: FROM, outboxDir, log: createLogger(silent) });
    await mailer.send({ to: "x@example.org", subject: "real", text: "real" });
    const newer = "2999-01-01T00:00:00.000Z-";
    await writeFile(join(outboxDir, `${newer}0000000000000001.json`), "{ not json");
    await writeFile(join(outboxDir, `${newer}0000000000000002.json`), JSON.stringify({ id: 1 }));
    // Well-formed, but claims another file's id.
    const impostor = {
      id: `${newer}0000000000000009`,
      to: "x@example.org",
      from: FROM,
      subject: "impostor",
      text: "",
      createdAt: "2999-01-01T00:00:00.000Z",
    };
    await writeFile(join(outboxDir, `${newer}0000000000000003.json`), JSON.stringify(impostor));
    await writeFile(join(outboxDir, "notes.json"), JSON.stringify(impostor));
    await writeFile(join(outboxDir, "README.txt"), "hello");

    const mails = await readOutbox(outboxDir, 10);
    expect(mails.map((mail) => mail.subject)).toEqual(["real"]);
    expect(await readOutboxMail(outboxDir, `${newer}0000000000000001`)).toBeUndefined();
    expect(await readOutboxMail(outboxDir, `${newer}0000000000000003`)).toBeUndefined();
  });

  it("rejects ids that could name files outside the outbox", async () => {
    const mailer = createMailer({ from: FROM, outboxDir, log: createLogger(silent) });
    await mailer.send({ to: "x@example.org", subject: "real", text: "real" });
    const [real] = await readOutbox(outboxDir, 1);
    // A valid mail file outside the outbox, which a traversal would reach.
    const outsideId = "2000-01-01T00:00:00.000Z-00000000000000aa";
    const outside = { ...real!, id: outsideId };
    await writeFile(join(root, `${outsideId}.json`), JSON.stringify(outside));
    await writeFile(join(root, "secret.json"), JSON.stringify(outside));

    for (const id of [
      `../${outsideId}`,
      `..%2F${outsideId}`,
      `${real!.id}/../../${outsideId}`,
      "../secret",
      join(root, outsideId),
      `${real!.id}\n`,
      `${real!.id}.json`,
      "",
    ]) {
      expect(await readOutboxMail(outboxDir, id), id).toBeUndefined();
    }
    expect(await readOutboxMail(outboxDir, real!.id)).toEqual(real);
  });

  it("treats a missing outbox as empty", async () => {
    expect(await readOutbox(join(root, "never-created"), 10)).toEqual([]);
    expect(
      await readOutboxMail(
        join(root, "never-created"),
        "2000-01-01T00:00:00.000Z-0000000000000000",
      ),
    ).toBeUndefined();
  });
});

interface ReceivedMail {
  mailFrom: string;
  recipients: string[];
  data: string;
}

/**
 * Just enough of an SMTP server (RFC 5321: EHLO, MAIL, RCPT, DATA, QUIT) to
 * capture what the mailer sends. Recipients in `refuse` get a 550.
 */
class FakeSmtpServer {
  readonly received: ReceivedMail[] = [];
  readonly refuse = new Set<string>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  constructor() {
    this.#server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      this.#converse(socket);
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    const { port } = this.#server.address() as AddressInfo;
    return `smtp://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #converse(socket: Socket): void {
    const reply = (line: string): void => void socket.write(`${line}\r\n`);
    let buffered = "";
    let mail: ReceivedMail | undefined;
    let dataLines: string[] | undefined;

    const onLine = (line: string): void => {
      if (dataLines !== undefined) {
        if (line === ".") {
          if (mail !== undefined) this.received.push({ ...mail, data: dataLines.join("\r\n") });
          mail = undefined;
          dataLines = undefined;
          reply("250 2.0.0 queued");
        } else {
          // Undo dot-stuffing (RFC 5321 4.5.2).
          dataLines.push(line.startsWith(".") ? line.slice(1) : line);
        }
        return;
      }
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO" || verb === "HELO") {
        reply("250-fake.smtp.test");
        reply("250 8BITMIME");
      } else if (verb === "MAIL") {
        mail = { mailFrom: addressIn(line), recipients: [], data: "" };
        reply("250 2.1.0 ok");
      } else if (verb === "RCPT") {
        const recipient = addressIn(line);
        if (this.refuse.has(recipient)) {
          reply("550 5.1.1 no such user");
        } else {
          mail?.recipients.push(recipient);
          reply("250 2.1.5 ok");
        }
      } else if (verb === "DATA") {
        dataLines = [];
        reply("354 end with <CRLF>.<CRLF>");
      } else if (verb === "RSET") {
        mail = undefined;
        reply("250 2.0.0 ok");
      } else if (verb === "QUIT") {
        reply("221 2.0.0 bye");
        socket.end();
      } else {
        reply("502 5.5.2 not implemented");
      }
    };

    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      let end: number;
      while ((end = buffered.indexOf("\r\n")) !== -1) {
        onLine(buffered.slice(0, end));
        buffered = buffered.slice(end + 2);
      }
    });
    reply("220 fake.smtp.test ESMTP");
  }
}

function addressIn(command: string): string {
  return /<([^>]*)>/.exec(command)?.[1] ?? "";
}

describe("SMTP mailer", () => {
  let smtp: FakeSmtpServer;
  let smtpUrl: string;

  beforeEach(async () => {
    smtp = new FakeSmtpServer();
    smtpUrl = await smtp.start();
  });

  afterEach(async () => {
    await smtp.stop();
  });

  it("hands the mail to the relay and writes nothing to the outbox", async () => {
    const { log, lines } = capturingLogger();
    const mailer = createMailer({ smtpUrl, from: FROM, outboxDir, log });
    await mailer.send({
      to: "ada@example.org",
      subject: "Verify your address",
      text: `Open ${SECRET_LINK}`,
      html: `<a href="${SECRET_LINK}">Verify</a>`,
    });

    expect(smtp.received).toHaveLength(1);
    const [received] = smtp.received as [ReceivedMail];
    expect(received.mailFrom).toBe("noreply@switchboard.test");
    expect(received.recipients).toEqual(["ada@example.org"]);
    expect(received.data).toMatch(/^Subject: Verify your address$/m);
    expect(received.data).toMatch(/^To: ada@example\.org$/m);
    expect(received.data).toMatch(/^From: Switchboard <noreply@switchboard\.test>$/m);
    expect(received.data).toMatch(/^Content-Type: multipart\/alternative/m);
    expect(received.data).toContain("s3cr3t-verification-token");

    expect(await readOutbox(outboxDir, 10)).toEqual([]);
    const logged = lines();
    expect(logged).toHaveLength(1);
    expect(JSON.parse(logged[0]!)).toMatchObject({
      toDomain: "example.org",
      subject: "Verify your address",
      msg: "mail sent",
    });
    expect(logged.join("\n")).not.toContain("s3cr3t");
  });

  it("rejects with upstream_failed when the relay refuses the recipient", async () => {
    smtp.refuse.add("nobody@example.org");
    const { log, lines } = capturingLogger();
    const mailer = createMailer({ smtpUrl, from: FROM, outboxDir, log });
    const sending = mailer.send({ to: "nobody@example.org", subject: "Hi", text: SECRET_LINK });

    await expect(sending).rejects.toBeInstanceOf(AppError);
    await expect(sending).rejects.toMatchObject({ code: "upstream_failed" });
    expect(smtp.received).toEqual([]);
    const logged = lines().map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logged).toEqual([
      expect.objectContaining({ msg: "mail not sent", toDomain: "example.org", subject: "Hi" }),
    ]);
    expect(JSON.stringify(logged)).not.toContain("s3cr3t");
  });
});
