import { afterEach } from 'vitest';
import type { ConfabServer, ServerOptions } from '../../src/server/index.js';
import type { Recorder } from './clients.js';
import { testServer } from './net.js';

/**
 * What a test opens, closed after it in reverse order: servers on port 0 and
 * recorded clients, or anything pushed on `cleanup`. Call once per file.
 */
export function testScope(): {
  cleanup: (() => unknown)[];
  server: (options?: ServerOptions) => Promise<ConfabServer>;
  track: <T extends Recorder>(r: T) => T;
} {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    while (cleanup.length > 0) await cleanup.pop()?.();
  });
  return {
    cleanup,
    async server(options = {}) {
      const s = await testServer(options);
      cleanup.push(() => s.close());
      return s;
    },
    track(r) {
      cleanup.push(() => r.client.close());
      return r;
    },
  };
}
