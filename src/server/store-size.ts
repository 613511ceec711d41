/**
 * What a stored message costs the history store, as eviction ranks rooms by
 * it. The count follows SQLite's record and cell format, so that a sender
 * cannot make its rooms look smaller than they are: a message just past what
 * fits in a b-tree cell takes a whole overflow page more (4.4 times its bytes
 * at about 1 KB), and whether it does depends on every byte of the record,
 * the sequence number's included.
 */

/** Bytes of the room id and the message id. */
const ID_BYTES = 16;
/** The message-id index's entry (room id, message id, number: about 40 bytes) and the cells' pointers. */
export const ENTRY_BYTES = 48;

/** SQLite's thresholds for a cell in an index b-tree page (a WITHOUT ROWID table's). */
function thresholds(pageSize: number): { maxLocal: number; minLocal: number; overflow: number } {
  return {
    maxLocal: Math.floor(((pageSize - 12) * 64) / 255) - 23,
    minLocal: Math.floor(((pageSize - 12) * 32) / 255) - 23,
    overflow: pageSize - 4,
  };
}

/** Bytes SQLite stores an integer in (0 and 1 take none). */
function intBytes(v: number): number {
  if (v === 0 || v === 1) return 0;
  const a = v < 0 ? -v - 1 : v;
  return a < 0x80 ? 1 : a < 0x8000 ? 2 : a < 0x800000 ? 3 : a < 0x80000000 ? 4 : a < 0x800000000000 ? 6 : 8;
}

/** Bytes of a varint (the record's serial types and the cell's payload size). */
function varintBytes(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Bytes of a message's record: its header, then room id, number, time, message id, nick and body. */
export function recordBytes(nickBytes: number, bodyBytes: number, seq: number, ts: number): number {
  const types = 4 + varintBytes(2 * nickBytes + 12) + varintBytes(2 * bodyBytes + 12);
  const header = types + varintBytes(types + 1);
  return header + ID_BYTES + intBytes(seq) + intBytes(ts) + ID_BYTES + nickBytes + bodyBytes;
}

/** Bytes of the store a message takes: its cell, pages of overflow included, and its index entry. */
export function storedSize(nickBytes: number, bodyBytes: number, seq: number, ts: number, pageSize: number): number {
  const { maxLocal, minLocal, overflow } = thresholds(pageSize);
  const p = recordBytes(nickBytes, bodyBytes, seq, ts);
  if (p <= maxLocal) return varintBytes(p) + p + ENTRY_BYTES;
  const k = minLocal + ((p - minLocal) % overflow);
  const local = k <= maxLocal ? k : minLocal;
  return varintBytes(p) + local + 4 + Math.ceil((p - local) / overflow) * pageSize + ENTRY_BYTES;
}

/** `storedSize` as an SQL expression over a `messages` row. */
export function storedSizeSql(pageSize: number): string {
  const { maxLocal, minLocal, overflow } = thresholds(pageSize);
  const varint = (v: string): string =>
    `(CASE WHEN ${v} < 128 THEN 1 WHEN ${v} < 16384 THEN 2 WHEN ${v} < 2097152 THEN 3 WHEN ${v} < 268435456 THEN 4 ELSE 5 END)`;
  const int = (v: string): string =>
    `(CASE WHEN ${v} IN (0, 1) THEN 0 WHEN ${v} BETWEEN -128 AND 127 THEN 1 WHEN ${v} BETWEEN -32768 AND 32767 THEN 2 ` +
    `WHEN ${v} BETWEEN -8388608 AND 8388607 THEN 3 WHEN ${v} BETWEEN -2147483648 AND 2147483647 THEN 4 ` +
    `WHEN ${v} BETWEEN -140737488355328 AND 140737488355327 THEN 6 ELSE 8 END)`;
  const types = `(4 + ${varint('(2 * length(nick) + 12)')} + ${varint('(2 * length(body) + 12)')})`;
  const header = `(${types} + ${varint(`(${types} + 1)`)})`;
  const p = `(${header} + ${2 * ID_BYTES} + ${int('seq')} + ${int('ts')} + length(nick) + length(body))`;
  const k = `(${minLocal} + (${p} - ${minLocal}) % ${overflow})`;
  const local = `(CASE WHEN ${k} <= ${maxLocal} THEN ${k} ELSE ${minLocal} END)`;
  const spilled = `${local} + 4 + ((${p} - ${local} + ${overflow - 1}) / ${overflow}) * ${pageSize}`;
  return `(${varint(p)} + CASE WHEN ${p} <= ${maxLocal} THEN ${p} ELSE ${spilled} END + ${ENTRY_BYTES})`;
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
