import { describe, expect, it } from 'vitest';
import { Outcomes } from '../../../src/client/index.js';

describe('Outcomes', () => {
  it('settles once every outcome added so far has, and at once with none open', async () => {
    const o = new Outcomes();
    await o.settled(); // none: settles
    let finish: () => void = () => {};
    o.add(new Promise<void>((resolve) => (finish = resolve)));
    o.add(Promise.resolve());
    let done = false;
    const waiting = o.settled().then(() => (done = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(done).toBe(false);
    finish();
    await waiting;
    expect(done).toBe(true);
  });
});
