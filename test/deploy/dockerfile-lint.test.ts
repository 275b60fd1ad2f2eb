// The Dockerfile passes dockerfilelint (from npm: hadolint is not installable on these machines),
// and the linter does flag a Dockerfile with the faults it knows, so a pass means something.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const REPO = new URL('../../', import.meta.url).pathname;
const lint = createRequire(import.meta.url)('dockerfilelint') as {
  run(configDir: string, content: string): { rule: string; line: number; title: string }[];
};

describe('Dockerfile lint', () => {
  it('finds nothing in the Dockerfile', () => {
    expect(lint.run(REPO, readFileSync(`${REPO}Dockerfile`, 'utf8'))).toEqual([]);
  });

  it('flags a Dockerfile with a latest tag and a lowercase instruction', () => {
    const rules = lint.run(REPO, 'FROM node:latest\nrun npm ci\n').map((i) => i.rule);
    expect(rules).toEqual(expect.arrayContaining(['latest_tag', 'uppercase_commands']));
  });
});
