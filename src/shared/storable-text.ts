/**
 * PostgreSQL text and jsonb cannot hold U+0000, so a NUL in input that is
 * stored fails the whole statement. Input from people is refused
 * (`nulPath`); events from a homeserver, which must be taken, have their NULs
 * replaced (`replaceNul`). Both walk without recursion: JSON may be deep.
 */

/** The path (".a.0") of a string or key in `root` holding a NUL, if any. */
export function nulPath(root: unknown): string | undefined {
  const pending: { value: unknown; path: string }[] = [{ value: root, path: "" }];
  const seen = new Set<object>();
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, path } = next;
    if (typeof value === "string") {
      if (value.includes("\u0000")) return path;
    } else if (isUnseenObject(value, seen)) {
      for (const [key, child] of Object.entries(value)) {
        // The key is quoted with its NUL removed so that the path stays printable.
        if (key.includes("\u0000")) return `${path}.${key.replaceAll("\u0000", "")}`;
        pending.push({ value: child, path: `${path}.${key}` });
      }
    }
  }
  return undefined;
}

/** `value` with every NUL in its strings and keys replaced by U+FFFD, changed in place (parsed JSON only). */
export function replaceNul<T>(value: T): T {
  if (typeof value === "string") return value.replaceAll("\u0000", "\uFFFD") as T;
  const pending: unknown[] = [value];
  const seen = new Set<object>();
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    if (!isUnseenObject(node, seen)) continue;
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      let child = record[key];
      if (typeof child === "string") child = child.replaceAll("\u0000", "\uFFFD");
      else pending.push(child);
      if (key.includes("\u0000")) {
        Reflect.deleteProperty(record, key);
        record[key.replaceAll("\u0000", "\uFFFD")] = child;
      } else record[key] = child;
    }
  }
  return value;
}

/** Whether `value` is an object (not a Buffer) not walked before; marks it walked. Input may share or cycle objects. */
function isUnseenObject(value: unknown, seen: Set<object>): value is object {
  if (typeof value !== "object" || value === null || Buffer.isBuffer(value) || seen.has(value))
    return false;
  seen.add(value);
  return true;
}
