import { describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/protocol/index.js';

describe('systemClock', () => {
  it('waits past setTimeout’s ceiling instead of firing at once with a warning (a WELCOME may ask for 2^32 ms)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    let fired = false;
    const cancel = systemClock.setTimer(() => (fired = true), 2 ** 32 - 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    cancel();
    process.off('warning', onWarning);
    expect(fired).toBe(false);
    expect(warnings.filter((w) => w.name === 'TimeoutOverflowWarning')).toEqual([]);
  });
});
