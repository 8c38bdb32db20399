/**
 * Whether `value` (parsed JSON) nests objects and arrays more than `maxDepth`
 * levels deep. Walked without recursion: the point is to catch values too
 * deep for the recursive JSON.stringify that storing them would run.
 */
export function jsonDepthExceeds(value: unknown, maxDepth: number): boolean {
  const pending: { node: unknown; depth: number }[] = [{ node: value, depth: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, depth } = next;
    if (typeof node !== "object" || node === null) continue;
    if (depth >= maxDepth) return true;
    for (const child of Object.values(node)) pending.push({ node: child, depth: depth + 1 });
  }
  return false;
}
