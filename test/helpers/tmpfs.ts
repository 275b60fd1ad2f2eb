// A small real filesystem that a test can fill: a tmpfs mounted on a fresh directory. Mounting
// needs root (or CAP_SYS_ADMIN); without it the caller skips its test with the reason in the
// title, and a line on stderr says so here.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  dir: string;
  mounted: boolean;
  /** Unmounts (lazily, so a process still holding files does not block it) and removes the directory. */
  remove(): void;
}

export function mountTmpfs(prefix: string, size: string): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let mounted = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    mounted = true;
  } catch {
    process.stderr.write(`${prefix}: test skipped: cannot mount a tmpfs at ${dir} (needs root)\n`);
  }
  return {
    dir,
    mounted,
    remove() {
      if (mounted) execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
