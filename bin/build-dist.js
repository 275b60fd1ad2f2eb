// Compiles src/ to dist/ (tsc -p tsconfig.build.json) and stamps it with the sources it was built
// from (bin/dist-stamp.js), so bin/edgeferry.js runs dist/ only while it matches src/.
//
//   node bin/build-dist.js               npm run build: fails on a type error
//   node bin/build-dist.js --if-possible the prepare script (npm ci, npm install): never fails
//                                            the install; without typescript (--omit=dev) or on a
//                                            compile error dist/ is left out and src/ runs instead

import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { STAMP_FILE, sourceStamp } from './dist-stamp.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const soft = process.argv.includes('--if-possible');

function giveUp(why) {
  rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
  process.stderr.write(`edgeferry build: ${why}\n`);
  if (soft)
    process.stderr.write('edgeferry build: no dist/; bin/edgeferry.js will run src/ (type stripping)\n');
  process.exit(soft ? 0 : 1);
}

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  giveUp('typescript is not installed (a production install?)');
}
// Before compiling: a source edited during the build then no longer matches the stamp.
const stamp = sourceStamp(root);
// Without the old dist/, a file removed from src/ cannot linger there.
rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) giveUp(`tsc failed (${r.status ?? r.signal})`);
writeFileSync(new URL(`../${STAMP_FILE}`, import.meta.url), JSON.stringify(stamp));
