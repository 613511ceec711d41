import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';

const LF = 0x0a;

/**
 * Passes a stream's bytes on with each line (up to LF) cut to `max` bytes:
 * the rest of a longer line is dropped as it arrives. A line can't be sent
 * past MAX_TEXT anyway, and readline kept all of it: 400 MB without a line
 * break took 1.3 GB, and 700 MB ended the process (a string too long). Cut at
 * `max` = MAX_TEXT + 1, such a line is still refused, as too long.
 */
export class LineCap extends Transform {
  private readonly max: number;
  /** Bytes of the current line passed on so far. */
  private run = 0;

  constructor(max: number) {
    super();
    this.max = max;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let from = 0;
    while (from < chunk.length) {
      const lf = chunk.indexOf(LF, from);
      const end = lf === -1 ? chunk.length : lf;
      const room = Math.max(0, this.max - this.run);
      const take = Math.min(end - from, room);
      if (take > 0) this.push(chunk.subarray(from, from + take));
      this.run += take;
      if (lf === -1) break;
      this.push(chunk.subarray(lf, lf + 1));
      this.run = 0;
      from = lf + 1;
    }
    done();
  }
}
