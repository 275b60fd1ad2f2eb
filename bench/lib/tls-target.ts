// edgeferry with its MQTT TLS listener as the load's target: a throwaway CA and a server
// certificate for localhost / 127.0.0.1 made with the system openssl, the HTTP sink as in
// `startEdgeferry`.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, makeTempDir } from './proc.ts';
import { type EdgeferryTargetOptions, type MqttTarget, startEdgeferry } from './targets.ts';

function openssl(args: string[], cwd: string): void {
  execFileSync('/usr/bin/openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A CA and a server certificate signed by it, in a fresh temp dir. */
export function benchServerCert(): { ca: string; certFile: string; keyFile: string } {
  const dir = makeTempDir('edgeferry-bench-tls-');
  openssl(
    ['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=bench-ca'],
    dir,
  );
  openssl(['req', ...EC, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial'].concat([
      '-out',
      'server.crt',
      '-days',
      '2',
      '-extfile',
      'server.ext',
    ]),
    dir,
  );
  return {
    ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    certFile: join(dir, 'server.crt'),
    keyFile: join(dir, 'server.key'),
  };
}

/** edgeferry whose load arrives on its TLS listener (the plain one stays, unused). */
export async function startEdgeferryTls(opts: EdgeferryTargetOptions): Promise<MqttTarget> {
  const cert = benchServerCert();
  const port = await freePort();
  const target = await startEdgeferry({
    ...opts,
    daemon: {
      ...opts.daemon,
      mqtt: { ...opts.daemon?.mqtt, tls: { port, certFile: cert.certFile, keyFile: cert.keyFile } },
    },
  });
  return { ...target, name: 'edgeferry tls', port, tls: { ca: cert.ca } };
}
