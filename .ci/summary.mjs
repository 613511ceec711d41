// Turns vitest's JSON report into the one line CI reads: "N passed, N failed".
// A missing report (lint or build failed before vitest ran) counts as one failure.
import { existsSync, readFileSync } from 'node:fs';

const path = process.argv[2] ?? 'test-results/results.json';
if (!existsSync(path)) {
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const report = JSON.parse(readFileSync(path, 'utf8'));
let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of report.testResults ?? []) {
  for (const t of file.assertionResults ?? []) {
    if (t.status === 'passed') passed++;
    else if (t.status === 'failed') failed++;
    else skipped++;
  }
  // A file that failed to load has no assertions but must still count.
  if ((file.assertionResults ?? []).length === 0 && file.status === 'failed') failed++;
}
console.log(
  skipped > 0 ? `${passed} passed, ${failed} failed, ${skipped} skipped` : `${passed} passed, ${failed} failed`,
);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
