// Which part of a verified device certificate becomes its identity (cn, san-dns, san-uri), over
// real TLS handshakes; a certificate that fails verification, or lacks the field, has none.

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peerIdentity } from '../../src/sources/mqtt-broker/tls-listener.ts';
import { generatePki, type TestPki } from '../grpc/certs.ts';
import { tempDir } from '../helpers/daemon.ts';
import { issue } from './security-helpers.ts';

describe('device identity from a client certificate', () => {
  let pki: TestPki;
  let server: ReturnType<typeof createServer>;
  const accepted: TLSSocket[] = [];

  beforeAll(async () => {
    pki = generatePki(tempDir('edgeferry-identity-'));
    server = createServer(
      { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: false },
      (s) => accepted.push(s),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  afterAll(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((r) => server.close(r));
  });

  async function handshake(cert?: Buffer, key?: Buffer): Promise<TLSSocket> {
    const n = accepted.length;
    const port = (server.address() as AddressInfo).port;
    const c = connect({ host: '127.0.0.1', port, ca: pki.ca, servername: 'localhost', cert, key });
    await once(c, 'secureConnect');
    while (accepted.length === n) await new Promise((r) => setTimeout(r, 5));
    c.destroy();
    return accepted[n];
  }

  it('cn, san-dns and san-uri, each from its own field', async () => {
    const spiffe = issue(pki.dir, 'spiffe-dev', {
      cn: 'dev-9',
      san: 'URI:spiffe://plant.example/sensor/9,DNS:dev-9.plant.example',
    });
    const s = await handshake(readFileSync(spiffe.certFile), readFileSync(spiffe.keyFile));
    expect(peerIdentity(s, 'cn')).toBe('dev-9');
    expect(peerIdentity(s, 'san-uri')).toBe('spiffe://plant.example/sensor/9');
    expect(peerIdentity(s, 'san-dns')).toBe('dev-9.plant.example');
  });

  it('none without a certificate; refused (undefined) for a foreign one or a missing field', async () => {
    expect(peerIdentity(await handshake(), 'cn')).toBeNull();
    expect(peerIdentity(await handshake(pki.otherClientCert, pki.otherClientKey), 'cn')).toBeUndefined();
    // The plain client certificate has no SAN at all.
    expect(peerIdentity(await handshake(pki.clientCert, pki.clientKey), 'san-uri')).toBeUndefined();
    expect(peerIdentity(await handshake(pki.clientCert, pki.clientKey), 'cn')).toBe('client');
  });
});
