/**
 * A minimal ustar writer: enough to hand a few small text files to the
 * Docker engine's archive endpoint (PUT /containers/{id}/archive), which is
 * how secrets reach a container without appearing in any URL or in Env.
 */

export interface TarEntry {
  /** Relative path, at most 100 bytes; a trailing "/" makes a directory. */
  readonly name: string;
  readonly content?: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

const BLOCK_BYTES = 512;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function header(entry: TarEntry, size: number, mtimeSeconds: number): Buffer {
  if (Buffer.byteLength(entry.name) > 100) throw new Error(`tar: name too long: ${entry.name}`);
  const block = Buffer.alloc(BLOCK_BYTES);
  const isDirectory = entry.name.endsWith("/");
  block.write(entry.name, 0, "utf8");
  block.write(octal(entry.mode, 8), 100);
  block.write(octal(entry.uid, 8), 108);
  block.write(octal(entry.gid, 8), 116);
  block.write(octal(size, 12), 124);
  block.write(octal(mtimeSeconds, 12), 136);
  // The checksum is computed with its own field read as spaces.
  block.write("        ", 148);
  block.write(isDirectory ? "5" : "0", 156);
  block.write("ustar\0", 257);
  block.write("00", 263);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return block;
}

export function createTar(entries: readonly TarEntry[], mtimeSeconds = 0): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.content ?? "", "utf8");
    parts.push(header(entry, data.length, mtimeSeconds));
    if (data.length > 0) {
      parts.push(data, Buffer.alloc((BLOCK_BYTES - (data.length % BLOCK_BYTES)) % BLOCK_BYTES));
    }
  }
  // Two zero blocks end the archive.
  parts.push(Buffer.alloc(2 * BLOCK_BYTES));
  return Buffer.concat(parts);
}
