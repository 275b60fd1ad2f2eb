// What bin/edgeferry.js's first line sets up for node: `#!/usr/bin/env -S [NAME=VALUE ...] node
// [--flag ...]`. `npm start` runs the file, so the line is where the runtime settings live; the
// bench (bench/lib/daemon.ts) and the image test (test/deploy/runtime-tree.test.ts) read them
// from here so that both run what users run, and the Dockerfile must repeat them.

import { readFileSync } from 'node:fs';

/** `{ env, flags }` of the `#!/usr/bin/env -S` line of `file`. */
export function readShebang(file) {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0];
  const m = /^#!\/usr\/bin\/env -S (.*)$/.exec(first);
  if (!m) throw new Error(`${file}: expected a "#!/usr/bin/env -S" line, got ${first}`);
  const words = m[1].split(' ').filter((w) => w !== '');
  const node = words.indexOf('node');
  if (node === -1) throw new Error(`${file}: the first line does not run node: ${first}`);
  const env = {};
  for (const w of words.slice(0, node)) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new Error(`${file}: "${w}" before node is not NAME=VALUE`);
    env[w.slice(0, eq)] = w.slice(eq + 1);
  }
  return { env, flags: words.slice(node + 1) };
}
