// The daemon wired from its config: mqtt.limits reach the broker and /metrics, admin.token
// guards /v1/* but not the probes or /metrics, grpc.tls rotation is counted in /metrics.

import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { generatePki } from '../grpc/certs.ts';
import { baseConfig, type DaemonHandle, startDaemon, tempDir, writeConfig } from '../helpers/daemon.ts';
import { rawClient } from '../mqtt/broker-harness.ts';

let d: DaemonHandle | null = null;
afterEach(async () => {
  await d?.stop();
  d = null;
});

describe('daemon: mqtt.limits, admin.token, TLS reload metrics', () => {
  it('refuses a connection past maxConnections, counts it in /metrics; /v1 needs the token', async () => {
    const dir = tempDir();
    const pki = generatePki(tempDir('edgeferry-pki-'));
    const cfg = baseConfig(dir, {
      mqtt: { host: '127.0.0.1', port: 0, limits: { maxConnections: 1 } },
      admin: { host: '127.0.0.1', port: 0, token: 'op-token' },
      grpc: { host: '127.0.0.1', port: 0, tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile } },
    });
    d = await startDaemon(dir, writeConfig(dir, cfg));
    const admin = `http://127.0.0.1:${d.adminPort}`;

    const first = await rawClient(d.mqttPort, 'only-one');
    const extra = connect(d.mqttPort, '127.0.0.1');
    extra.on('error', () => {});
    await new Promise((resolve) => extra.once('close', resolve));
    first.socket.destroy();

    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toContain('edgeferry_mqtt_limit_hits_total{limit="connections"} 1');
    expect(metrics).toContain('edgeferry_mqtt_limit_hits_total{limit="rate"} 0');
    expect(metrics).toContain('edgeferry_tls_reloads_total{component="grpc",result="refused"} 0');
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    const denied = await fetch(`${admin}/v1/status`);
    expect(denied.status).toBe(401);
    expect(denied.headers.get('www-authenticate')).toBe('Bearer realm="edgeferry"');
    const status = await fetch(`${admin}/v1/status`, { headers: { authorization: 'Bearer op-token' } });
    expect(status.status).toBe(200);
    const doc = (await status.json()) as { sources: { name: string; counters: Record<string, number> }[] };
    expect(doc.sources.find((s) => s.name === 'mqtt')?.counters.limitConnections).toBe(1);
  });
});
