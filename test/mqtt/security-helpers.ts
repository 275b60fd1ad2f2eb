// For the MQTT device security tests: extra certificates signed by the CA of test/grpc/certs.ts
// (an expired client certificate, a second server certificate for rotation), a metric's value,
// the TLS listener's port.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DaemonHandle } from '../helpers/daemon.ts';

const OPENSSL = '/usr/bin/openssl';

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Issues `<name>.crt` / `<name>.key` in `dir` from `ca` (`ca.crt`/`ca.key` there); days may be negative. */
export function issue(
  dir: string,
  name: string,
  opts: { cn: string; days?: number; server?: boolean; san?: string },
): { certFile: string; keyFile: string } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${opts.cn}`], dir);
  const usage = opts.server ? 'serverAuth' : 'clientAuth';
  const san = opts.san ?? (opts.server ? 'IP:127.0.0.1,DNS:localhost' : undefined);
  writeFileSync(
    join(dir, `${name}.ext`),
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\n${san ? `subjectAltName=${san}\n` : ''}`,
  );
  openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
      '-out',
      `${name}.crt`,
      '-days',
      String(opts.days ?? 2),
      '-extfile',
      `${name}.ext`,
    ]),
    dir,
  );
  return { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
}

/** A sample's value in Prometheus text, NaN when absent. */
export function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : Number.NaN;
}

export function tlsPort(d: DaemonHandle): number {
  return Number(d.logs.find((l) => l.msg === 'mqtt tls listening')?.port ?? 0);
}
