// Builds the optional native fan-out addon (native/fanout.c) at install time.
// It only makes the relay's writes cheaper: if it can't be built (no compiler,
// Windows), the server uses Node's streams and says so at startup, and the
// install still succeeds.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
if (process.platform === 'win32') {
  console.warn('confab: native fan-out not built on Windows; the relay uses Node streams');
  process.exit(0);
}
// npm hands lifecycle scripts its bundled node-gyp; outside npm, try PATH.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
const r = spawnSync(cmd, [...args, 'rebuild', '--directory', here, '--loglevel', 'error'], { stdio: 'inherit' });
if (r.error) console.warn(`confab: ${r.error.message}`);
if (r.status !== 0) {
  console.warn(
    'confab: native fan-out not built (see above); the relay uses Node streams, which cost more CPU per delivery',
  );
}
