// Interop of the CoAP observer with libcoap's example server (`coap-server-notls`, Debian
// libcoap3-bin), an RFC 7641 implementation nobody on this project wrote: its `/time` resource
// is observable and notifies once a second (confirmable, Max-Age 1).

import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect } from 'vitest';
import { deadPort } from '../coap/coap-device.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { coapServer, coapServerDtls, itWithPeer } from './peer-tools.ts';

const libcoap = coapServer();
const libcoapDtls = coapServerDtls();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Runs a libcoap server on 127.0.0.1:port; resolves once it answers (its log says it is up). */
async function libcoapServer(bin: string, port: number, extra: string[] = []): Promise<ChildProcess> {
  const proc = spawn(bin, ['-A', '127.0.0.1', '-p', String(port), ...extra], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  cleanups.push(stop);
  (proc as ChildProcess & { stopped: () => Promise<void> }).stopped = stop;
  return proc;
}

async function stopServer(proc: ChildProcess): Promise<void> {
  await (proc as ChildProcess & { stopped: () => Promise<void> }).stopped();
}

async function gateway(devices: unknown[], sinkUrl: string): Promise<DaemonHandle> {
  const dir = tempDir('edgeferry-coap-interop-');
  const cfg = baseConfig(dir, {
    coap: { host: '127.0.0.1', port: 0, devices },
    sinks: [{ name: 'cloud', type: 'http', url: sinkUrl, payloadEncoding: 'utf8', batch: { lingerMs: 5 } }],
  });
  const d = await startDaemon(dir, writeConfig(dir, cfg));
  cleanups.push(() => d.stop());
  return d;
}

async function receiver(): Promise<HttpReceiver> {
  const r = new HttpReceiver();
  await r.start();
  cleanups.push(() => r.stop());
  return r;
}

async function state(d: DaemonHandle, device: string): Promise<string | undefined> {
  const s = await d.status();
  const src = s.sources.find((x) => x.name === 'coap-observer') as unknown as {
    counters: { resources: { device: string; state: string }[] };
  };
  return src.counters.resources.find((r) => r.device === device)?.state;
}

describe('CoAP observer interop (libcoap)', () => {
  itWithPeer(
    libcoap,
    "follows coap-server-notls' observable /time and re-registers after the server restarts",
    async () => {
      const up = await receiver();
      const port = await deadPort();
      let server = await libcoapServer(libcoap.paths['coap-server-notls'], port);
      const d = await gateway(
        [
          {
            name: 'libcoap',
            url: `coap://127.0.0.1:${port}`,
            timeoutMs: '500ms',
            retry: { minMs: '100ms', maxMs: '500ms' },
            resources: [{ path: '/time', topic: 'clock/time' }],
          },
        ],
        up.url,
      );
      await eventually(() => up.records.length >= 2, 'two /time notifications delivered', 20_000);
      expect(up.records[0]).toMatchObject({ source: 'coap', device: 'libcoap', topic: 'clock/time' });
      // libcoap's /time answers with a clock such as "Dec 05 13:54:02".
      expect(up.records[0].payload).toMatch(/\d\d:\d\d:\d\d/);
      expect(await state(d, 'libcoap')).toBe('observing');

      await stopServer(server);
      await eventually(
        async () => (await state(d, 'libcoap')) === 'retrying',
        'the observer noticed',
        20_000,
      );
      const n = up.records.length;
      server = await libcoapServer(libcoap.paths['coap-server-notls'], port);
      await eventually(() => up.records.length >= n + 2, 'notifications after the restart', 20_000);
      expect(await state(d, 'libcoap')).toBe('observing');
    },
    60_000,
  );

  // coap-server-openssl with -k listens for DTLS on port + 1 and accepts any PSK identity.
  itWithPeer(
    libcoapDtls,
    'follows /time over coaps:// (DTLS-PSK) from coap-server-openssl',
    async () => {
      const up = await receiver();
      const port = await deadPort();
      // An empty identity hint: node-dtls-client 1.1 cannot parse the ServerKeyExchange a hint needs.
      await libcoapServer(libcoapDtls.paths['coap-server-openssl'], port, ['-k', 'gw-secret', '-h', '']);
      const d = await gateway(
        [
          {
            name: 'secure',
            url: `coaps://127.0.0.1:${port + 1}`,
            psk: { identity: 'gateway', key: 'gw-secret' },
            timeoutMs: '2s',
            retry: { minMs: '100ms', maxMs: '500ms' },
            resources: [{ path: '/time', topic: 'clock/secure' }],
          },
        ],
        up.url,
      );
      await eventually(() => up.records.length >= 2, 'two notifications over DTLS', 20_000);
      expect(up.records[0]).toMatchObject({ device: 'secure', topic: 'clock/secure' });
      expect(up.records[0].payload).toMatch(/\d\d:\d\d:\d\d/);
      expect(await state(d, 'secure')).toBe('observing');
    },
    60_000,
  );

  itWithPeer(
    libcoapDtls,
    'a DTLS server sending a PSK identity hint fails the handshake and is retried; the daemon stays up',
    async () => {
      const up = await receiver();
      const port = await deadPort();
      await libcoapServer(libcoapDtls.paths['coap-server-openssl'], port, [
        '-k',
        'gw-secret',
        '-h',
        'a-hint',
      ]);
      const d = await gateway(
        [
          {
            name: 'hinted',
            url: `coaps://127.0.0.1:${port + 1}`,
            psk: { identity: 'gateway', key: 'gw-secret' },
            timeoutMs: '2s',
            retry: { minMs: '100ms', maxMs: '500ms' },
            resources: [{ path: '/time', topic: 'clock/hinted' }],
          },
        ],
        up.url,
      );
      await eventually(
        async () => {
          const s = await d.status();
          const src = s.sources.find((x) => x.name === 'coap-observer') as unknown as {
            counters: { resources: { errors: number; lastError: string | null }[] };
          };
          return src.counters.resources[0].errors >= 2;
        },
        'two failed handshakes',
        20_000,
      );
      expect(await state(d, 'hinted')).toBe('retrying');
      expect(d.proc.exitCode).toBeNull();
      expect((await d.status()).ready).toBe(true);
    },
    60_000,
  );
});
