#!/usr/bin/env -S node --max-semi-space-size=16
// Runs dist/ (the tsc output, built by `npm ci` through the prepare script) when it was compiled
// from exactly the current src/, else src/ itself through Node's type stripping (Node >= 22.18).
// Same code either way; dist/ idles about 27 MB lower because the stripper (a WebAssembly build
// of swc) and the TypeScript sources it keeps are never loaded (bench/tools/idle-rss.ts).
// EDGEFERRY_FROM_SRC=1 always runs src/ (the tests do, so they test what is in src/).
// A 4 MiB young generation (V8's default grows to 16-32 MiB) keeps scavenges short and promotes
// less: measured side by side at 20 000 msg/s, p99 30-33 ms instead of 70-94 ms and 50-70 MB less
// RSS (bench/README.md). The bench reads the flags from this line, so it runs what users run.
import { fileURLToPath } from 'node:url';
import { distState } from './dist-stamp.js';

const state =
  process.env.EDGEFERRY_FROM_SRC === '1'
    ? 'skipped'
    : distState(fileURLToPath(new URL('..', import.meta.url)));
if (state === 'current') {
  await import('../dist/cli.js');
} else {
  if (state === 'stale') {
    process.stderr.write(
      'edgeferry: dist/ was built from other sources than src/ now holds: running src/ (npm run build updates dist/)\n',
    );
  }
  await import('../src/cli.ts');
}
