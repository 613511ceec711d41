/**
 * What a stored message costs the history store, as eviction ranks rooms by
 * it. The count follows SQLite's own layout, so that a sender cannot make its
 * rooms look smaller than they are: a message just past what fits in a b-tree
 * cell takes a whole overflow page more (4.4 times its bytes at about 1 KB).
 */

/** The message's other columns (room id, number, time, message id) and its record header, bytes. */
export const ROW_BYTES = 48;
/** Its cell pointer and its entry in the message-id index, bytes. */
export const ENTRY_BYTES = 48;

/** SQLite's thresholds for a cell in an index b-tree page (a WITHOUT ROWID table's). */
function thresholds(pageSize: number): { maxLocal: number; minLocal: number; overflow: number } {
  return {
    maxLocal: Math.floor(((pageSize - 12) * 64) / 255) - 23,
    minLocal: Math.floor(((pageSize - 12) * 32) / 255) - 23,
    overflow: pageSize - 4,
  };
}

/** Bytes of the store a message with this nick and body takes, pages of overflow included. */
export function storedSize(nickBytes: number, bodyBytes: number, pageSize: number): number {
  const { maxLocal, minLocal, overflow } = thresholds(pageSize);
  const payload = nickBytes + bodyBytes + ROW_BYTES;
  if (payload <= maxLocal) return payload + ENTRY_BYTES;
  const k = minLocal + ((payload - minLocal) % overflow);
  const local = k <= maxLocal ? k : minLocal;
  return local + Math.ceil((payload - local) / overflow) * pageSize + ENTRY_BYTES;
}

/** `storedSize` as an SQL expression over a `messages` row. */
export function storedSizeSql(pageSize: number): string {
  const { maxLocal, minLocal, overflow } = thresholds(pageSize);
  const p = `(length(nick) + length(body) + ${ROW_BYTES})`;
  const k = `(${minLocal} + (${p} - ${minLocal}) % ${overflow})`;
  const local = `(CASE WHEN ${k} <= ${maxLocal} THEN ${k} ELSE ${minLocal} END)`;
  const spilled = `${local} + ((${p} - ${local} + ${overflow - 1}) / ${overflow}) * ${pageSize}`;
  return `(CASE WHEN ${p} <= ${maxLocal} THEN ${p} ELSE ${spilled} END + ${ENTRY_BYTES})`;
}

/**
 * The level to which rooms of these sizes (largest first) are cut so that
 * `target` bytes go: the largest lose the most, and none goes below it.
 */
export function waterLevel(sizes: readonly number[], target: number): number {
  let sum = 0;
  for (let k = 0; k < sizes.length; k++) {
    sum += sizes[k] as number;
    const next = sizes[k + 1] ?? 0;
    if (sum - (k + 1) * next >= target) return Math.max(next, (sum - target) / (k + 1));
  }
  return 0;
}
