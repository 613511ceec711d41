// Turns vitest's JSON report into the one line CI reads: "N passed, N failed".
// A missing report (lint or build failed before vitest ran), or one that can't
// be read, counts as one failure.
import { readFileSync } from 'node:fs';

const path = process.argv[2] ?? 'test-results/results.json';
// The test command's exit status: vitest fails a run with unhandled errors
// (an exception thrown outside any test) although every test passed, and its
// report does not say so.
const status = Number(process.argv[3] ?? 0);
let report;
try {
  report = JSON.parse(readFileSync(path, 'utf8'));
} catch (err) {
  console.log(`no test report (${err.message})`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
let passed = 0;
let failed = 0;
const skipped = [];
for (const file of report.testResults ?? []) {
  for (const t of file.assertionResults ?? []) {
    if (t.status === 'passed') passed++;
    else if (t.status === 'failed') failed++;
    else skipped.push(t.fullName ?? t.title);
  }
  // A file that failed to load has no assertions but must still count.
  if ((file.assertionResults ?? []).length === 0 && file.status === 'failed') failed++;
}
if (passed === 0 && failed === 0) {
  console.log('no test ran: one failure');
  failed = 1;
} else if (status !== 0 && failed === 0) {
  console.log(`the test command exited with ${status} though no test failed (unhandled errors?): one failure`);
  failed = 1;
}
// Named, so a skip is seen for what it is (each says why in its own output).
if (skipped.length > 0) {
  const named = skipped.slice(0, 20).map((n) => `  - ${n}`);
  if (skipped.length > 20) named.push(`  - and ${skipped.length - 20} more`);
  console.log(`${skipped.length} skipped:\n${named.join('\n')}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
