// Interop with libcoap's command-line client (Debian libcoap3-bin, `coap-client-notls`): a peer
// implementation of CoAP (RFC 7252, RFC 7959) that nobody on this project wrote. Its block-wise
// POST sends every block with a new token, which node-coap's server cannot reassemble.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { coapClient, itWithPeer } from './peer-tools.ts';

const libcoap = coapClient();
const daemons: DaemonHandle[] = [];
const receivers: HttpReceiver[] = [];

afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  await Promise.all(receivers.splice(0).map((r) => r.stop()));
});

async function setup(): Promise<{ d: DaemonHandle; r: HttpReceiver; dir: string }> {
  const r = new HttpReceiver();
  await r.start();
  receivers.push(r);
  const dir = tempDir();
  const config = baseConfig(dir, {
    coap: { host: '127.0.0.1', port: 0 },
    sinks: [
      { name: 'up', type: 'http', url: r.url, payloadEncoding: 'utf8', retry: { minMs: 50, maxMs: 500 } },
    ],
  });
  const d = await startDaemon(dir, writeConfig(dir, config));
  daemons.push(d);
  return { d, r, dir };
}

/** Runs coap-client-notls; resolves with its exit code and output, killing it after 30 s. */
function coapClientRun(args: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(libcoap.paths['coap-client-notls'], args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    proc.stderr.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

const coapRecords = (r: HttpReceiver) => r.records.filter((x) => x.source === 'coap');

describe('interop: libcoap coap-client', () => {
  itWithPeer(libcoap, 'a CON POST from coap-client-notls is acknowledged and delivered', async () => {
    const { d, r, dir } = await setup();
    const res = await coapClientRun(
      ['-m', 'post', '-t', '50', '-e', '{"t":1}', `coap://127.0.0.1:${d.coapPort}/t/libcoap/con?d=lc1`],
      dir,
    );
    expect(res.code, res.out).toBe(0);
    await eventually(() => coapRecords(r).length >= 1, 'the libcoap record delivered');
    expect(coapRecords(r)[0]).toMatchObject({
      topic: 'libcoap/con',
      device: 'lc1',
      contentType: 'application/json',
      payload: '{"t":1}',
    });
  });

  itWithPeer(libcoap, 'a NON POST (-N) is delivered', async () => {
    const { d, r, dir } = await setup();
    const res = await coapClientRun(
      ['-N', '-m', 'post', '-e', 'non-hello', `coap://127.0.0.1:${d.coapPort}/t/libcoap/non`],
      dir,
    );
    expect(res.code, res.out).toBe(0);
    await eventually(() => coapRecords(r).length >= 1, 'the NON record delivered');
    expect(coapRecords(r)[0]).toMatchObject({ topic: 'libcoap/non', payload: 'non-hello' });
  });

  itWithPeer(libcoap, 'a block-wise POST (-b 64, a new token per block) arrives whole', async () => {
    const { d, r, dir } = await setup();
    const body = Array.from({ length: 4096 }, (_, i) => String.fromCharCode(0x61 + (i % 26))).join('');
    const file = join(dir, 'body.txt');
    writeFileSync(file, body);
    const res = await coapClientRun(
      ['-m', 'post', '-b', '64', '-f', file, `coap://127.0.0.1:${d.coapPort}/t/libcoap/blob`],
      dir,
    );
    expect(res.code, res.out).toBe(0);
    await eventually(() => coapRecords(r).length >= 1, 'the block-wise record delivered');
    expect(coapRecords(r).map((x) => [x.topic, x.payload.length, x.payload === body])).toEqual([
      ['libcoap/blob', 4096, true],
    ]);
    expect((await d.status()).journal.counters.appended).toBe(1);
  });

  itWithPeer(libcoap, 'GET /.well-known/core lists the telemetry resource', async () => {
    const { d, dir } = await setup();
    const res = await coapClientRun(['-m', 'get', `coap://127.0.0.1:${d.coapPort}/.well-known/core`], dir);
    expect(res.code, res.out).toBe(0);
    expect(res.out).toContain('</t>;rt="edgeferry.telemetry"');
  });
});
