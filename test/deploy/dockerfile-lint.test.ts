// The Dockerfile passes dockerfilelint (from npm: hadolint is not installable on these machines),
// and the linter does flag a Dockerfile with the faults it knows, so a pass means something.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const REPO = new URL('../../', import.meta.url).pathname;
const lint = createRequire(import.meta.url)('dockerfilelint') as {
  run(configDir: string, content: string): { rule: string; line: number; title: string }[];
};

/**
 * dockerfilelint 1.8 predates `FROM --platform=...` and reads the flag as an image without a
 * tag. Such a report is dropped only where the image after the flag does carry a tag.
 */
function withoutPlatformMisreads(text: string, issues: ReturnType<typeof lint.run>) {
  const lines = text.split('\n');
  return issues.filter((i) => {
    const m = /^FROM\s+--platform=\S+\s+(\S+)/i.exec(lines[i.line - 1] ?? '');
    return !(i.rule === 'missing_tag' && m && /:[^/]+$/.test(m[1]));
  });
}

describe('Dockerfile lint', () => {
  const text = readFileSync(`${REPO}Dockerfile`, 'utf8');

  it('finds nothing in the Dockerfile', () => {
    expect(withoutPlatformMisreads(text, lint.run(REPO, text))).toEqual([]);
  });

  it('flags a latest tag, a lowercase instruction and an untagged image after --platform', () => {
    const bad = 'FROM node:latest\nrun npm ci\nFROM --platform=$BUILDPLATFORM node AS x\n';
    const rules = withoutPlatformMisreads(bad, lint.run(REPO, bad)).map((i) => `${i.line}:${i.rule}`);
    expect(rules).toEqual(expect.arrayContaining(['1:latest_tag', '2:uppercase_commands', '3:missing_tag']));
  });
});
