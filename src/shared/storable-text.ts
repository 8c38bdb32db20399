/**
 * PostgreSQL text and jsonb hold neither U+0000 nor unpaired surrogates (which
 * are not Unicode text at all), so input holding them fails the statement that
 * stores it. Input from people is refused (`unstorableText`); events from a
 * homeserver, which must be taken, are repaired (`makeStorable`: U+FFFD in
 * their place). Both walk without recursion, as JSON may be deep, and visit
 * each object once.
 */

/** What is wrong with a string, if anything. */
function problemIn(text: string): string | undefined {
  if (text.includes("\u0000")) return "must not contain NUL characters";
  if (!text.isWellFormed()) return "must not contain unpaired surrogates (invalid Unicode)";
  return undefined;
}

function repaired(text: string): string {
  return text.replaceAll("\u0000", "\uFFFD").toWellFormed();
}

/** The path (".a.0") of a string or key in `root` that cannot be stored, and why; undefined when all can. */
export function unstorableText(root: unknown): { path: string; problem: string } | undefined {
  const pending: { value: unknown; path: string }[] = [{ value: root, path: "" }];
  const seen = new Set<object>();
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, path } = next;
    if (typeof value === "string") {
      const problem = problemIn(value);
      if (problem !== undefined) return { path, problem };
    } else if (isUnseenObject(value, seen)) {
      for (const [key, child] of Object.entries(value)) {
        const problem = problemIn(key);
        // The key is quoted repaired, so that the message stays printable.
        if (problem !== undefined) return { path: `${path}.${repaired(key)}`, problem };
        pending.push({ value: child, path: `${path}.${key}` });
      }
    }
  }
  return undefined;
}

/** `value` with every string and key repaired, changed in place (parsed JSON only). */
export function makeStorable<T>(value: T): T {
  if (typeof value === "string") return repaired(value) as T;
  const pending: unknown[] = [value];
  const seen = new Set<object>();
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    if (!isUnseenObject(node, seen)) continue;
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      let child = record[key];
      if (typeof child === "string") child = repaired(child);
      else pending.push(child);
      if (problemIn(key) !== undefined) {
        Reflect.deleteProperty(record, key);
        record[repaired(key)] = child;
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
