// The TLS-only listener with required client certificates, and certificate rotation: files
// rewritten in place are picked up for new handshakes while an established connection keeps
// working; a broken new file is refused and the certificate in use stays.

import { copyFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePki, type TestPki } from '../grpc/certs.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { issue, metric, tlsPort } from './security-helpers.ts';

/** The fingerprint of the certificate the listener presents to a new handshake. */
function servedFingerprint(port: number, pki: TestPki): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      {
        host: '127.0.0.1',
        port,
        ca: pki.ca,
        cert: pki.clientCert,
        key: pki.clientKey,
        servername: 'localhost',
      },
      () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      },
    );
    s.once('error', reject);
  });
}

describe('MQTT over TLS only, mTLS required, certificate rotation', () => {
  let dir: string;
  let pki: TestPki;
  let receiver: HttpReceiver;
  let d: DaemonHandle;
  let port: number;
  let device: MqttClient | null = null;

  beforeAll(async () => {
    dir = tempDir('edgeferry-mqtt-rot-');
    pki = generatePki(dir);
    receiver = new HttpReceiver();
    await receiver.start();
    const config = baseConfig(dir, {
      mqtt: {
        host: '127.0.0.1',
        port: false,
        tls: {
          port: 0,
          certFile: pki.serverCertFile,
          keyFile: pki.serverKeyFile,
          caFile: pki.caFile,
          requireClientCert: true,
        },
        reloadCheckMs: 50,
      },
      sinks: [{ name: 'up', type: 'http', url: receiver.url, batch: { lingerMs: 0 } }],
    });
    d = await startDaemon(dir, writeConfig(dir, config));
    port = tlsPort(d);
  }, 60_000);

  afterAll(async () => {
    await device?.endAsync(true);
    await d?.stop();
    await receiver?.stop();
  });

  it('has no plain TCP listener, and refuses a client without a certificate at the handshake', async () => {
    expect(d.logs.some((l) => l.msg === 'mqtt listening')).toBe(false);
    expect(port).toBeGreaterThan(0);
    const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
      ca: pki.ca,
      servername: 'localhost',
      reconnectPeriod: 0,
      clientId: 'no-cert',
    });
    const outcome = await new Promise<string>((resolve) => {
      c.once('connect', () => resolve('connected'));
      c.once('error', (err) => resolve(`error: ${err.message}`));
      c.once('close', () => resolve('closed'));
    });
    c.end(true);
    expect(outcome).not.toBe('connected');
    await eventually(
      async () => metric(await d.metrics(), 'edgeferry_mqtt_auth_refused_total', 'reason="tls"') >= 1,
      'the refusal counted',
    );
  });

  it('picks up a rewritten certificate for new connections while a connected device keeps publishing', async () => {
    device = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      ca: pki.ca,
      cert: pki.clientCert,
      key: pki.clientKey,
      servername: 'localhost',
      reconnectPeriod: 0,
      clientId: 'steady',
    });
    await device.publishAsync('plant/t', 'before', { qos: 1 });
    const first = await servedFingerprint(port, pki);

    // cert-manager's way: new files written over the old ones, the same paths.
    const next = issue(dir, 'server-2', { cn: 'server-2', server: true });
    copyFileSync(next.keyFile, pki.serverKeyFile);
    copyFileSync(next.certFile, pki.serverCertFile);
    let second = first;
    await eventually(async () => {
      second = await servedFingerprint(port, pki);
      return second !== first;
    }, 'the new certificate served');
    expect(d.logs.some((l) => l.msg === 'mqtt tls certificate reloaded: new connections use it')).toBe(true);

    // The device connected before the rotation was never dropped.
    expect(device.connected).toBe(true);
    await device.publishAsync('plant/t', 'after', { qos: 1 });
    await eventually(
      () => receiver.records.filter((r) => r.device === 'steady').length === 2,
      'both records upstream',
    );

    // A broken file: refused, logged, counted; the certificate in use stays.
    const errors0 = metric(await d.metrics(), 'edgeferry_mqtt_tls_reloads_total', 'result="error"');
    writeFileSync(pki.serverCertFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n');
    await eventually(
      async () => metric(await d.metrics(), 'edgeferry_mqtt_tls_reloads_total', 'result="error"') > errors0,
      'the broken file refused',
    );
    expect(d.logs.some((l) => l.msg === 'mqtt tls certificate not reloaded: keeping the old one')).toBe(true);
    expect(await servedFingerprint(port, pki)).toBe(second);
    // An expired replacement (a renewal gone wrong) is refused the same way.
    const errors1 = metric(await d.metrics(), 'edgeferry_mqtt_tls_reloads_total', 'result="error"');
    const old = issue(dir, 'server-expired', { cn: 'server-expired', server: true, days: -1 });
    copyFileSync(old.keyFile, pki.serverKeyFile);
    copyFileSync(old.certFile, pki.serverCertFile);
    // (The key may be seen alone first: refused as a mismatch, then the pair as expired.)
    await eventually(
      async () =>
        metric(await d.metrics(), 'edgeferry_mqtt_tls_reloads_total', 'result="error"') > errors1 &&
        d.logs.some((l) => /certificate expired/.test(String(l.err))),
      'the expired certificate refused',
    );
    expect(await servedFingerprint(port, pki)).toBe(second);
    expect(device.connected).toBe(true);
    await device.publishAsync('plant/t', 'still', { qos: 1 });
    await eventually(
      () => receiver.records.filter((r) => r.device === 'steady').length === 3,
      'third record upstream',
    );
  });
});
