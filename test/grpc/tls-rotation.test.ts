// Certificate rotation on the Gateway gRPC server: files rewritten in place (as cert-manager and
// SPIRE do) reach new connections while an established Subscribe stream keeps flowing; broken
// files are refused with an error while the last good ones stay in use.

import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { credentials } from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually, tempDir } from '../helpers/daemon.ts';
import { generatePki, issueLeaf, type TestPki } from './certs.ts';
import { gatewayClient } from './grpc-client.ts';
import { type InProcessGateway, inProcessGateway, subscribe } from './in-process.ts';

let pki: TestPki;
let gw: InProcessGateway | null = null;
const clients: { close(): void }[] = [];

beforeAll(() => {
  pki = generatePki(tempDir('edgeferry-pki-'));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await gw?.close();
  gw = null;
});

/** The CN of the certificate the server presents to a new TLS connection (mTLS, ALPN h2). */
function serverCn(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port,
        ca: pki.ca,
        cert: pki.clientCert,
        key: pki.clientKey,
        ALPNProtocols: ['h2'],
      },
      () => {
        const cn = s.getPeerCertificate().subject.CN;
        s.destroy();
        resolve(String(cn));
      },
    );
    s.on('error', reject);
  });
}

describe('gRPC server certificate rotation', () => {
  it('new files reach new connections, the open stream stays up; broken files are refused, the last good kept', async () => {
    const dir = tempDir('edgeferry-live-tls-');
    const certFile = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    copyFileSync(pki.serverCertFile, certFile);
    copyFileSync(pki.serverKeyFile, keyFile);
    gw = await inProcessGateway({}, { tls: { certFile, keyFile, caFile: pki.caFile }, tlsReloadMs: 50 });
    const port = Number(gw.server.addresses().port);
    const client = gatewayClient(
      `127.0.0.1:${port}`,
      credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert),
    );
    clients.push(client);
    const sub = subscribe(client, { start: 'START_EARLIEST' });
    await gw.append('t/before');
    await eventually(() => sub.records().length === 1 || sub.error !== null, 'the first record streamed');
    expect(sub.error).toBeNull();
    expect(await serverCn(port)).toBe('server');

    const renewed = issueLeaf(pki, 'server-renewed', 'server');
    writeFileSync(certFile, renewed.cert);
    writeFileSync(keyFile, renewed.key);
    await eventually(
      async () => (await serverCn(port)) === 'server-renewed',
      'the renewed certificate served',
    );
    expect(gw.server.tlsReloads).toEqual({ reloads: 1, reloadErrors: 0 });
    await gw.append('t/after');
    await eventually(() => sub.records().length === 2, 'the open stream goes on after the rotation');
    expect(sub.error).toBeNull();
    expect(sub.records().map((r) => r.topic)).toEqual(['t/before', 't/after']);

    // A truncated certificate, then a certificate whose key is another one's: both refused.
    writeFileSync(certFile, renewed.cert.subarray(0, 100));
    await eventually(() => gw!.server.tlsReloads?.reloadErrors === 1, 'the truncated file refused');
    const third = issueLeaf(pki, 'server-third', 'server');
    writeFileSync(certFile, third.cert);
    await eventually(() => gw!.server.tlsReloads?.reloadErrors === 2, 'the mismatched key refused');
    expect(gw.log.lines.filter((l) => l.msg.startsWith('new TLS files refused')).map((l) => l.err)).toEqual([
      expect.stringMatching(/PEM|certificate|asn1|header/i),
      expect.stringMatching(/key values mismatch/),
    ]);
    expect(await serverCn(port)).toBe('server-renewed');
    const fresh = gatewayClient(
      `127.0.0.1:${port}`,
      credentials.createSsl(pki.ca, pki.clientKey, pki.clientCert),
    );
    clients.push(fresh);
    const again = subscribe(fresh, { start: 'START_EARLIEST' });
    await eventually(() => again.records().length === 2, 'a new client served with the kept files');

    // The key arrives: the pair is whole and taken.
    writeFileSync(keyFile, third.key);
    await eventually(async () => (await serverCn(port)) === 'server-third', 'the fixed pair served');
    expect(gw.server.tlsReloads).toEqual({ reloads: 2, reloadErrors: 2 });
    await gw.append('t/third');
    await eventually(() => sub.records().length === 3, 'the first stream still open');
  });
});
