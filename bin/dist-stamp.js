// Whether dist/ was compiled from exactly the sources now in src/. The stamp lists every input of
// the build with its size and mtime (ns), taken before tsc ran: an edit, a checkout, an added or a
// removed file all change the list, so a dist/ older than src/ is never mistaken for current. A
// false "stale" (a touch without a change) only costs running src/ through type stripping.
// Plain JS with node:fs only, because bin/edgeferry.js runs it before anything else is loaded.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const STAMP_FILE = 'dist/source-stamp.json';
const INPUTS = ['tsconfig.json', 'tsconfig.build.json'];

/** `[path, size, mtimeNs]` for every build input under `root`, sorted by path. */
export function sourceStamp(root) {
  const files = [...INPUTS];
  const walk = (dir) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk('src');
  files.sort();
  return files.map((f) => {
    const s = statSync(join(root, f), { bigint: true });
    return [f, Number(s.size), s.mtimeNs.toString()];
  });
}

/** 'current', 'missing' (never built, or the build failed) or 'stale'. */
export function distState(root) {
  let stamp;
  try {
    stamp = readFileSync(join(root, STAMP_FILE), 'utf8');
  } catch {
    return 'missing';
  }
  return stamp === JSON.stringify(sourceStamp(root)) ? 'current' : 'stale';
}
