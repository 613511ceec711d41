import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/** What `capYoungGeneration` reads and sets: V8's, or a test's. */
export interface YoungGenerationHeap {
  /** Bytes the young generation spans now (both semi-spaces). */
  size(): number;
  /** Sets the factor by which V8 grows the young generation when it grows it. */
  setGrowthFactor(factor: number): void;
  /** Calls `listener` after garbage collections; returns a function that stops. */
  afterGc(listener: () => void): () => void;
}

/** V8's own heap, through node:v8 and node:perf_hooks. */
export const v8Heap: YoungGenerationHeap = {
  size: () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0,
  setGrowthFactor: (factor) => setFlagsFromString(`--semi-space-growth-factor=${factor}`),
  afterGc(listener) {
    const observer = new PerformanceObserver(listener);
    observer.observe({ entryTypes: ['gc'] });
    return () => observer.disconnect();
  },
};

/**
 * Keeps V8's young generation at most `semiSpaceMiB` per semi-space, from
 * inside the process. A burst of joins makes V8 grow it to its 16 MiB default
 * and keep it there for half a minute: 32 MiB that, spread over the
 * connections, was most of an idle connection's cost. The cap V8 itself
 * offers (`--max-semi-space-size`) can only be given on node's command line;
 * the growth factor can be set at run time, so after each collection it is set
 * to what takes the young generation to the cap and no further: the cap over
 * the size, and 1 once there. When V8 shrinks it again, idle, the factor lets
 * it grow back to the cap under load.
 *
 * Returns a function that stops adjusting.
 */
export function capYoungGeneration(semiSpaceMiB: number, heap: YoungGenerationHeap = v8Heap): () => void {
  const cap = semiSpaceMiB * 2 * 1024 * 1024;
  let factor = 0;
  const adjust = (): void => {
    const size = heap.size();
    if (size <= 0) return;
    const next = Math.max(1, Math.floor(cap / size));
    if (next === factor) return;
    factor = next;
    heap.setGrowthFactor(next);
  };
  adjust();
  return heap.afterGc(adjust);
}

/** Whether node was started with a semi-space size of the operator's own (NODE_OPTIONS or its arguments). */
export function semiSpaceGiven(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  // NODE_OPTIONS may quote an option ("--max-semi-space-size=32"): node accepts that.
  const options = (nodeOptions ?? '').split(/\s+/).map((o) => o.replace(/^["']|["']$/g, ''));
  return [...execArgv, ...options].some((o) => /^--(max|min)[-_]semi[-_]space[-_]size/.test(o));
}
