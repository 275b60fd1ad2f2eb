#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=131072 node --max-semi-space-size=4 --heap-growing-percent=20
// Runs dist/ (the tsc output, built by `npm ci` through the prepare script) when it was compiled
// from exactly the current src/, else src/ itself through Node's type stripping (Node >= 22.18).
// Same code either way; dist/ idles about 27 MB lower because the stripper (a WebAssembly build
// of swc) and the TypeScript sources it keeps are never loaded (bench/tools/idle-rss.ts).
// EDGEFERRY_FROM_SRC=1 always runs src/ (the tests do, so they test what is in src/).
// V8's heap: a 4 MiB young generation (semi-space) and old space grown by 20 % over what the
// last full collection kept, instead of V8's factor of up to 4: a gateway's live heap is small
// (20-30 MB under load) and everything else V8 holds is garbage waiting. Measured side by side
// with the 16 MiB semi-space used before (bench/README.md, Memory): peak RSS in mqtt-qos1 160-164
// -> 119-127 MB, mqtt-qos1-paced 192-196 -> 114-123 MB, a 1 000 000-record backlog held at 145 ->
// 133 MB and drained at a 236 -> 169 MB peak; it costs more collections (paced CPU 55 -> 62 %).
// The bench reads the flags from this line, so it runs what users run.
// GLIBC_TUNABLES (env -S sets it before node starts; glibc reads it only then): at most 2 malloc
// arenas instead of up to 8 per core for libuv's and LevelDB's threads, and blocks of 64 KiB and
// more mapped and unmapped on their own, so socket reads and sink batches go back to the system
// when freed instead of growing the heap that the dynamic mmap threshold (up to 32 MiB after the
// first large free) keeps them in. bench/README.md, Memory, has the figures. The Dockerfile
// repeats both (test/deploy/runtime-tree.test.ts checks).
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
