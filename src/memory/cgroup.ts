// The memory limit of the container the daemon runs in, read from the cgroup filesystem: what the
// OOM killer enforces, so what the memory budget (budget.ts) is sized from when the config sets
// none. Synchronous and small: read once at start-up.

import { existsSync, readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';

export interface CgroupLimit {
  bytes: number;
  /** `cgroup v2` or `cgroup v1`. */
  version: 'v1' | 'v2';
  /** The file the limit was read from (the tightest one on the way up). */
  file: string;
}

/** cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit value; anything this large is none. */
const UNLIMITED_V1 = 2 ** 60;

/**
 * The tightest memory limit on the daemon's cgroup and its ancestors, or null when there is none.
 * `root` prefixes every path read (`/proc/self/cgroup`, `/sys/fs/cgroup/...`), so tests point it
 * at fixture trees. A limit above the machine's RAM (`totalBytes`) limits nothing and is none.
 *
 * cgroup v2: the `0::<path>` line; the files are `memory.max` ("max" = none) under the unified
 * mount. cgroup v1: the line whose controllers include `memory`; `memory.limit_in_bytes` under
 * the memory mount. A container usually sees its own cgroup as the mount's root (a cgroup
 * namespace, or the runtime's bind mount), while /proc/self/cgroup may still name the host's
 * path: the path is tried whole, then with its leading components dropped, then the mount root.
 * Ancestors are read too, up to the mount: a pod's limit applies to its containers.
 */
export function readCgroupLimit(root = '/', totalBytes = totalmem()): CgroupLimit | null {
  let lines: string[];
  try {
    lines = readFileSync(join(root, 'proc/self/cgroup'), 'utf8').split('\n');
  } catch {
    return null;
  }
  let best: CgroupLimit | null = null;
  for (const line of lines) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line.trim()) ?? [];
    if (path === undefined) continue;
    let found: CgroupLimit | null = null;
    if (controllers === '') {
      found = tightest(
        root,
        ['sys/fs/cgroup', 'sys/fs/cgroup/unified'],
        path,
        'memory.max',
        'v2',
        totalBytes,
      );
    } else if (controllers.split(',').includes('memory')) {
      found = tightest(root, ['sys/fs/cgroup/memory'], path, 'memory.limit_in_bytes', 'v1', totalBytes);
    }
    if (found && (best === null || found.bytes < best.bytes)) best = found;
  }
  return best;
}

function tightest(
  root: string,
  mounts: string[],
  cgroupPath: string,
  file: string,
  version: 'v1' | 'v2',
  totalBytes: number,
): CgroupLimit | null {
  const segments = cgroupPath.split('/').filter((s) => s !== '');
  for (const mount of mounts) {
    const base = join(root, mount);
    // v2's unified mount holds cgroup.controllers; without one this is not a v2 hierarchy.
    if (version === 'v2' && !existsSync(join(base, 'cgroup.controllers'))) continue;
    if (!existsSync(base)) continue;
    for (let skip = 0; skip <= segments.length; skip++) {
      const rel = segments.slice(skip);
      if (!existsSync(join(base, ...rel))) continue;
      let best: CgroupLimit | null = null;
      // From the cgroup itself up to the mount's root.
      for (let depth = rel.length; depth >= 0; depth--) {
        const path = join(base, ...rel.slice(0, depth), file);
        const bytes = readLimit(path, version, totalBytes);
        if (bytes !== null && (best === null || bytes < best.bytes)) best = { bytes, version, file: path };
      }
      return best;
    }
  }
  return null;
}

/** One limit file: a byte count, or null for none, unreadable or not a number. */
function readLimit(path: string, version: 'v1' | 'v2', totalBytes: number): number | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
  if (version === 'v2' && text === 'max') return null;
  if (!/^\d+$/.test(text)) return null;
  const bytes = Number(text);
  if (bytes >= UNLIMITED_V1 || bytes >= totalBytes || bytes === 0) return null;
  return bytes;
}
