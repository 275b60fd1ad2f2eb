// The credentials file: one `user:$scrypt$ln=15,r=8,p=1$<salt>$<hash>` line per user (the PHC
// string format, salt and hash in unpadded base64), `#` comments, written by `edgeferry passwd`.
// scrypt, from node:crypto: memory-hard like argon2, and in every Node this project supports
// (node:crypto's argon2 arrived in Node 24.7, the argon2 npm package is a native addon).

import { createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/** N = 2^15, r = 8: 32 MiB and about 0.1 s of one core per check on a small node. */
export const DEFAULT_COST = { ln: 15, r: 8, p: 1 };
const SALT_BYTES = 16;
const HASH_BYTES = 32;
const ENTRY = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export class PasswordFileError extends Error {}

interface Entry {
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function scryptAsync(password: Buffer, e: Omit<Entry, 'hash'>, len: number): Promise<Buffer> {
  const N = 2 ** e.ln;
  return new Promise((resolve, reject) =>
    scrypt(password, e.salt, len, { N, r: e.r, p: e.p, maxmem: 256 * N * e.r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** One file line's value for `password`, with a fresh salt. */
export async function hashPassword(password: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await scryptAsync(Buffer.from(password, 'utf8'), { ...cost, salt }, HASH_BYTES);
  const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${b64(hash)}`;
}

function parseEntry(value: string, where: string): Entry {
  const m = ENTRY.exec(value);
  if (!m) throw new PasswordFileError(`${where}: not a $scrypt$ entry (write it with edgeferry passwd)`);
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (ln < 1 || ln > 22 || r < 1 || r > 32 || p < 1 || p > 16)
    throw new PasswordFileError(`${where}: scrypt parameters out of range (ln 1..22, r 1..32, p 1..16)`);
  return { ln, r, p, salt: Buffer.from(m[4], 'base64'), hash: Buffer.from(m[5], 'base64') };
}

/** The lines of a credentials file, in order: users with their entry text, comments kept. */
export function splitLines(text: string): { user: string | null; line: string }[] {
  return text
    .split(/\r?\n/)
    .filter((l, i, all) => l !== '' || i < all.length - 1)
    .map((line) => {
      if (line.trim() === '' || line.startsWith('#')) return { user: null, line };
      const colon = line.indexOf(':');
      return { user: colon > 0 ? line.slice(0, colon) : null, line };
    });
}

export class PasswordFile {
  private readonly entries = new Map<string, Entry>();
  /**
   * The last password that passed for each user, as an HMAC under a key that never leaves this
   * process: a fleet reconnecting after a restart costs one scrypt per device, not one per
   * connection. A wrong password always pays the full scrypt.
   */
  private readonly passed = new Map<string, Buffer>();
  private readonly cacheKey = randomBytes(32);

  constructor(text: string, file = 'password file') {
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (line === '' || line.startsWith('#')) continue;
      const where = `${file}:${i + 1}`;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new PasswordFileError(`${where}: expected user:$scrypt$...`);
      this.entries.set(line.slice(0, colon), parseEntry(line.slice(colon + 1), where));
    }
  }

  get size(): number {
    return this.entries.size;
  }

  async verify(user: string, password: Buffer): Promise<boolean> {
    const e = this.entries.get(user);
    if (!e) {
      // Same cost as a known user, so a timing does not tell which users exist.
      await scryptAsync(password, { ...DEFAULT_COST, salt: Buffer.alloc(SALT_BYTES) }, HASH_BYTES);
      return false;
    }
    const mac = createHmac('sha256', this.cacheKey).update(password).digest();
    const known = this.passed.get(user);
    if (known && timingSafeEqual(known, mac)) return true;
    const hash = await scryptAsync(password, e, e.hash.length);
    const ok = hash.length === e.hash.length && timingSafeEqual(hash, e.hash);
    if (ok) this.passed.set(user, mac);
    return ok;
  }
}
