// The credentials file and `edgeferry passwd`, through the real bin with the password on stdin
// and, where util-linux `script` gives it a terminal, typed without echo.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  hashPassword,
  PasswordFile,
  PasswordFileError,
} from '../../src/sources/mqtt-broker/password-file.ts';
import { BIN, tempDir } from '../helpers/daemon.ts';

const FAST = { ln: 4, r: 8, p: 1 };

function passwd(file: string, user: string, stdin: string) {
  return spawnSync(process.execPath, [BIN, 'passwd', file, user], {
    input: stdin,
    encoding: 'utf8',
    env: { ...process.env, EDGEFERRY_FROM_SRC: '1' },
  });
}

describe('password file', () => {
  it('verifies the right password only, with a salt per entry', async () => {
    const a = await hashPassword('s3cret', FAST);
    const b = await hashPassword('s3cret', FAST);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^\$scrypt\$ln=4,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    const f = new PasswordFile(`# devices\nalice:${a}\n\nbob:${b}\n`);
    expect(f.size).toBe(2);
    expect(await f.verify('alice', Buffer.from('s3cret'))).toBe(true);
    expect(await f.verify('alice', Buffer.from('s3cret'))).toBe(true); // the cached pass
    expect(await f.verify('alice', Buffer.from('wrong'))).toBe(false);
    expect(await f.verify('carol', Buffer.from('s3cret'))).toBe(false);
  });

  it('refuses a malformed line, naming file and line', () => {
    expect(() => new PasswordFile('alice:$7$101$abc\n', 'pw')).toThrow(PasswordFileError);
    expect(() => new PasswordFile('ok:$scrypt$ln=4,r=8,p=1$AAAA$AAAA\nnocolon\n', 'pw')).toThrow(/pw:2:/);
    expect(() => new PasswordFile('x:$scrypt$ln=40,r=8,p=1$AAAA$AAAA\n', 'pw')).toThrow(/out of range/);
  });

  it('edgeferry passwd adds and changes users from stdin, keeps other lines, mode 0600', async () => {
    const file = join(tempDir(), 'passwords');
    writeFileSync(file, '# fleet A\n');
    let r = passwd(file, 'alice', 'first\n');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('added alice');
    r = passwd(file, 'bob', 'bobs\n');
    expect(r.status, r.stderr).toBe(0);
    r = passwd(file, 'alice', 'second\n');
    expect(r.stderr).toContain('changed the password of alice');
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('# fleet A\nalice:$scrypt$')).toBe(true);
    expect(text.split('\n').filter((l) => l.startsWith('alice:'))).toHaveLength(1);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const f = new PasswordFile(text);
    expect(await f.verify('alice', Buffer.from('second'))).toBe(true);
    expect(await f.verify('alice', Buffer.from('first'))).toBe(false);
    expect(await f.verify('bob', Buffer.from('bobs'))).toBe(true);
  });

  it('edgeferry passwd refuses bad input and leaves the file alone', () => {
    const file = join(tempDir(), 'passwords');
    expect(passwd(file, 'alice', 'pw\n').status).toBe(0);
    const before = readFileSync(file, 'utf8');
    for (const [user, pw] of [
      ['bad:user', 'x\n'],
      ['dev/+', 'x\n'],
      ['alice', '\n'],
    ]) {
      const r = passwd(file, user, pw);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/edgeferry: passwd: (invalid user name|empty password)/);
    }
    expect(passwd(file, '', 'x').stderr).toContain('usage: edgeferry passwd FILE USER');
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it.runIf(statSafe('/usr/bin/script'))(
    'from a terminal the password is asked twice and never echoed',
    async () => {
      const file = join(tempDir(), 'passwords');
      const cmd = `${process.execPath} ${BIN} passwd ${file} tty-user`;
      const child = spawn('/usr/bin/script', ['-qec', cmd, '/dev/null'], {
        env: { ...process.env, EDGEFERRY_FROM_SRC: '1' },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('Password: ') && !out.includes('sent1')) {
          out += 'sent1';
          child.stdin.write('typed-secret\r');
        }
        if (out.includes('Reenter password: ') && !out.includes('sent2')) {
          out += 'sent2';
          child.stdin.write('typed-secret\r');
        }
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code, out).toBe(0);
      expect(out).not.toContain('typed-secret');
      expect(
        await new PasswordFile(readFileSync(file, 'utf8')).verify('tty-user', Buffer.from('typed-secret')),
      ).toBe(true);
    },
    30_000,
  );
});

function statSafe(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
