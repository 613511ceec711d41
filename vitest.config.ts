import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The JSON report is what .ci/run turns into its "N passed, N failed" line.
    reporters: ['default', ['json', { outputFile: 'test-results/results.json' }]],
    pool: 'forks',
    // A committed `.only` would skip every other test of its file and still pass;
    // vitest forbids it only where CI is set, and .ci/run does not depend on that.
    allowOnly: false,
  },
});
