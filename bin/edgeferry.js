#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=131072 node --max-semi-space-size=16
// Runs dist/ (the tsc output, built by `npm ci` through the prepare script) when it was compiled
// from exactly the current src/, else src/ itself through Node's type stripping (Node >= 22.18).
// Same code either way; dist/ idles about 27 MB lower because the stripper (a WebAssembly build
// of swc) and the TypeScript sources it keeps are never loaded (bench/tools/idle-rss.ts).
// EDGEFERRY_FROM_SRC=1 always runs src/ (the tests do, so they test what is in src/).
// A 16 MiB young generation (semi-space): a sink batch on its way upstream dies young instead of
// being promoted after two 4 MiB scavenges, so draining a backlog adds about half the memory it
// did with 4 MiB, at no cost to paced p99 (bench/README.md, Memory). The bench reads the flags
// from this line, so it runs what users run.
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
