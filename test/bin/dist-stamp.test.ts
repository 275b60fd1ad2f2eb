import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { distState, STAMP_FILE, sourceStamp } from '../../bin/dist-stamp.js';

describe('dist stamp (bin/edgeferry.js runs dist/ only when it matches src/)', () => {
  let root: string;
  const stamp = () => {
    mkdirSync(join(root, 'dist'), { recursive: true });
    writeFileSync(join(root, STAMP_FILE), JSON.stringify(sourceStamp(root)));
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'edgeferry-stamp-'));
    mkdirSync(join(root, 'src', 'core'), { recursive: true });
    for (const f of ['tsconfig.json', 'tsconfig.build.json', 'src/cli.ts', 'src/core/a.ts']) {
      writeFileSync(join(root, f), `// ${f}\n`);
    }
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('is missing without a build, current right after one', () => {
    expect(distState(root)).toBe('missing');
    stamp();
    expect(distState(root)).toBe('current');
  });

  it('is stale after an edit, even one that keeps the size and puts back an older mtime', () => {
    stamp();
    writeFileSync(join(root, 'src/core/a.ts'), '// src/core/b.ts\n');
    utimesSync(join(root, 'src/core/a.ts'), new Date(2000, 0, 1), new Date(2000, 0, 1));
    expect(distState(root)).toBe('stale');
  });

  it('is stale when a source is added or removed, or the build config changes', () => {
    stamp();
    writeFileSync(join(root, 'src/core/new.ts'), '\n');
    expect(distState(root)).toBe('stale');
    rmSync(join(root, 'src/core/new.ts'));
    expect(distState(root)).toBe('current');
    rmSync(join(root, 'src/core/a.ts'));
    expect(distState(root)).toBe('stale');
    stamp();
    writeFileSync(join(root, 'tsconfig.build.json'), '{}\n');
    expect(distState(root)).toBe('stale');
  });
});
