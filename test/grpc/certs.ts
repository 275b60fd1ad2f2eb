// Test PKI made with the system openssl: a CA, a server certificate for 127.0.0.1/localhost, a
// client certificate from the same CA, and a second CA with its own client certificate (a
// client the server must refuse).

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Server, ServerCredentials } from '@grpc/grpc-js';

const OPENSSL = '/usr/bin/openssl';

export interface TestPki {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  otherCaFile: string;
  otherClientCertFile: string;
  otherClientKeyFile: string;
  /** File contents, for grpc-js credentials. */
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  otherCa: Buffer;
  otherClientCert: Buffer;
  otherClientKey: Buffer;
}

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

function makeLeaf(dir: string, name: string, ca: string, ext: string): void {
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    ],
    dir,
  );
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

const SERVER_EXT =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n';
const CLIENT_EXT =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';

/**
 * Another certificate from the PKI's CA (`<dir>/<name>.crt` and `.key`, CN=name), such as
 * cert-manager would issue at a renewal: for rotation tests.
 */
export function issueLeaf(
  pki: TestPki,
  name: string,
  kind: 'server' | 'client',
): { cert: Buffer; key: Buffer } {
  makeLeaf(pki.dir, name, 'ca', kind === 'server' ? SERVER_EXT : CLIENT_EXT);
  return {
    cert: readFileSync(join(pki.dir, `${name}.crt`)),
    key: readFileSync(join(pki.dir, `${name}.key`)),
  };
}

/** Writes the whole PKI into `dir` (a fresh temporary directory). */
export function generatePki(dir: string): TestPki {
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  makeLeaf(dir, 'server', 'ca', SERVER_EXT);
  makeLeaf(dir, 'client', 'ca', CLIENT_EXT);
  makeLeaf(dir, 'other-client', 'other-ca', CLIENT_EXT);
  const f = (name: string) => join(dir, name);
  const r = (name: string) => readFileSync(join(dir, name));
  return {
    dir,
    caFile: f('ca.crt'),
    serverCertFile: f('server.crt'),
    serverKeyFile: f('server.key'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    otherCaFile: f('other-ca.crt'),
    otherClientCertFile: f('other-client.crt'),
    otherClientKeyFile: f('other-client.key'),
    ca: r('ca.crt'),
    serverCert: r('server.crt'),
    serverKey: r('server.key'),
    clientCert: r('client.crt'),
    clientKey: r('client.key'),
    otherCa: r('other-ca.crt'),
    otherClientCert: r('other-client.crt'),
    otherClientKey: r('other-client.key'),
  };
}

/** Binds a grpc-js server on 127.0.0.1 with the PKI's server certificate, requiring client certificates from its CA. */
export function bindMtls(server: Server, pki: TestPki): Promise<number> {
  const creds = ServerCredentials.createSsl(
    pki.ca,
    [{ private_key: pki.serverKey, cert_chain: pki.serverCert }],
    true,
  );
  return new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
}
