// Notices a changed file by polling its identity (inode, size, mtime): cert-manager and SPIRE
// rewrite files in place, often by swapping a symlink, which fs.watch on the old inode misses.

import { statSync } from 'node:fs';

function fileStamp(path: string): string {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (err) {
    return `missing:${(err as NodeJS.ErrnoException).code}`;
  }
}

/** Polls files for a change: one timer for all of them, unref'd. */
export class FileWatch {
  private readonly stamps = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;

  constructor(files: string[], everyMs: number, onChange: (file: string) => void) {
    for (const f of files) this.stamps.set(f, fileStamp(f));
    this.timer = setInterval(() => {
      for (const [f, old] of this.stamps) {
        const now = fileStamp(f);
        if (now !== old) {
          this.stamps.set(f, now);
          onChange(f);
        }
      }
    }, everyMs);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }
}
