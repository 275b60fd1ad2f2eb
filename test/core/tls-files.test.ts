// TlsFileWatcher and loadTls on real files: what counts as a change, when a half-written pair
// is waited for instead of refused, and what is refused.

import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTls, TlsFileWatcher, type TlsMaterial } from '../../src/core/tls-files.ts';
import { generatePki, issueLeaf, type TestPki } from '../grpc/certs.ts';
import { memoryLog } from '../grpc/in-process.ts';
import { tempDir } from '../helpers/daemon.ts';

let pki: TestPki;
beforeAll(() => {
  pki = generatePki(tempDir('edgeferry-pki-'));
});

function liveFiles(): { caFile: string; certFile: string; keyFile: string } {
  const dir = tempDir('edgeferry-live-tls-');
  const files = {
    caFile: join(dir, 'ca.crt'),
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
  };
  copyFileSync(pki.caFile, files.caFile);
  copyFileSync(pki.serverCertFile, files.certFile);
  copyFileSync(pki.serverKeyFile, files.keyFile);
  return files;
}

describe('TlsFileWatcher', () => {
  it('takes a new pair once it has settled: a cert written a check before its key is not refused', () => {
    const files = liveFiles();
    const log = memoryLog();
    const taken: TlsMaterial[] = [];
    const w = new TlsFileWatcher(files, 'test', log, (m) => taken.push(m));
    w.check();
    expect(taken).toEqual([]);
    const next = issueLeaf(pki, 'settle', 'server');
    writeFileSync(files.certFile, next.cert);
    w.check(); // changed since the last check: not settled yet
    writeFileSync(files.keyFile, next.key);
    w.check(); // changed again
    expect(w.counters).toEqual({ reloads: 0, reloadErrors: 0 });
    w.check(); // settled: taken
    expect(w.counters).toEqual({ reloads: 1, reloadErrors: 0 });
    expect(taken[0].cert?.equals(next.cert)).toBe(true);
    w.check();
    expect(taken.length).toBe(1);
  });

  it('refuses a broken set once (one error line), keeps the last good one, and takes the next good one', () => {
    const files = liveFiles();
    const log = memoryLog();
    const w = new TlsFileWatcher(files, 'test', log, () => {});
    const before = w.current;
    writeFileSync(files.caFile, 'not a certificate\n');
    w.check();
    w.check();
    w.check();
    expect(w.counters).toEqual({ reloads: 0, reloadErrors: 1 });
    expect(log.lines.filter((l) => l.level === 'error')).toMatchObject([
      { msg: 'new TLS files refused: the previous ones stay in use', tls: 'test', caFile: files.caFile },
    ]);
    expect(w.current).toBe(before);
    copyFileSync(pki.otherCaFile, files.caFile);
    w.check();
    w.check();
    expect(w.counters).toEqual({ reloads: 1, reloadErrors: 1 });
    expect(w.current.ca?.equals(pki.otherCa)).toBe(true);
  });

  it('a file that disappears after start is refused, not thrown; broken files at start throw', () => {
    const files = liveFiles();
    const log = memoryLog();
    const w = new TlsFileWatcher(files, 'test', log, () => {});
    rmSync(files.keyFile);
    w.check();
    w.check();
    expect(w.counters).toEqual({ reloads: 0, reloadErrors: 1 });
    expect(String(log.lines.at(-1)?.err)).toContain('ENOENT');
    expect(() => new TlsFileWatcher(files, 'test', log, () => {})).toThrow(/ENOENT/);
  });
});

describe('loadTls', () => {
  it('refuses an expired certificate and a key from another pair; throws on a missing file', () => {
    const files = { caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile };
    expect(loadTls(files).cert?.equals(pki.serverCert)).toBe(true);
    expect(() => loadTls(files, Date.now() + 10 * 86_400_000)).toThrow(/expired on/);
    expect(() => loadTls({ ...files, keyFile: pki.clientKeyFile })).toThrow(/key values mismatch/);
    expect(() => loadTls({ ...files, caFile: join(pki.dir, 'absent.crt') })).toThrow(/ENOENT/);
  });
});
