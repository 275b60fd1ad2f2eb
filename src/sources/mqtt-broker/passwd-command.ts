// `edgeferry passwd FILE USER`: adds USER to the credentials file or changes its password. From a
// terminal the password is read twice without echo; otherwise the first line of stdin is the
// password (scripts, tests). The file is replaced atomically (written beside, then renamed),
// mode 0600, every other line kept as it was.

import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hashPassword, splitLines } from './password-file.ts';

/** Reads one line from a TTY in raw mode, echoing nothing. */
function readHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  // Echo off before the prompt shows: a password typed the moment it appears is not echoed.
  input.setRawMode(true);
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let text = '';
    input.resume();
    input.setEncoding('utf8');
    const done = (err: Error | null) => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done(null);
        if (ch === '\u0003' || ch === '\u0004') return done(new Error('cancelled'));
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    input.on('data', onData);
  });
}

/** The first line of stdin, without waiting for the pipe to close. */
async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) {
    chunks.push(c as Buffer);
    if ((c as Buffer).includes(0x0a)) break;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const nl = text.search(/\r?\n/);
  return nl < 0 ? text : text.slice(0, nl);
}

export async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) return readStdinLine();
  const first = await readHidden('Password: ');
  const again = await readHidden('Reenter password: ');
  if (first !== again) throw new Error('the passwords do not match');
  return first;
}

/** Sets `user`'s password in `file` (created when missing). Returns whether the user was new. */
export async function setPassword(file: string, user: string, password: string): Promise<boolean> {
  if (user === '' || user.includes(':') || /[\s+#]/.test(user))
    throw new Error(`invalid user name ${JSON.stringify(user)}: no ':', space, '+' or '#'`);
  if (password === '') throw new Error('empty password');
  const entry = `${user}:${await hashPassword(password)}`;
  const lines = existsSync(file) ? splitLines(readFileSync(file, 'utf8')) : [];
  const at = lines.findIndex((l) => l.user === user);
  if (at >= 0) lines[at] = { user, line: entry };
  else lines.push({ user, line: entry });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${lines.map((l) => l.line).join('\n')}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return at < 0;
}

export async function passwdCommand(file: string | undefined, user: string | undefined): Promise<void> {
  if (!file || !user) throw new Error('usage: edgeferry passwd FILE USER');
  const added = await setPassword(file, user, await readPassword());
  process.stderr.write(`${file}: ${added ? 'added' : 'changed the password of'} ${user}\n`);
}
