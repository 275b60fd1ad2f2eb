// The CoAP server in the real daemon, driven by real UDP peers on 127.0.0.1: records reach an
// HTTP upstream with the right topic, device and content type; retransmissions are journaled
// once and answered twice; garbage, unknown paths, methods and oversize payloads get their codes;
// a full journal answers 5.03 with Max-Age; block-wise payloads arrive whole.

import { request as coapRequest } from 'coap';
import { afterEach, describe, expect, it } from 'vitest';
import { CoapPeer, type CoapResponse } from '../helpers/coap-peer.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';

const daemons: DaemonHandle[] = [];
const receivers: HttpReceiver[] = [];
const peers: CoapPeer[] = [];

afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.close().catch(() => {})));
  await Promise.all(daemons.splice(0).map((d) => d.kill()));
  await Promise.all(receivers.splice(0).map((r) => r.stop()));
});

async function setup(
  opts: { journal?: Record<string, unknown>; coap?: Record<string, unknown> } = {},
): Promise<{ d: DaemonHandle; r: HttpReceiver }> {
  const r = new HttpReceiver();
  await r.start();
  receivers.push(r);
  const dir = tempDir();
  const config = baseConfig(dir, {
    journal: { path: `${dir}/journal`, ...opts.journal },
    coap: { host: '127.0.0.1', port: 0, ...opts.coap },
    sinks: [
      { name: 'up', type: 'http', url: r.url, payloadEncoding: 'utf8', retry: { minMs: 50, maxMs: 500 } },
    ],
  });
  const d = await startDaemon(dir, writeConfig(dir, config));
  daemons.push(d);
  return { d, r };
}

async function peer(d: DaemonHandle): Promise<CoapPeer> {
  const p = await CoapPeer.open(d.coapPort);
  peers.push(p);
  return p;
}

function metric(text: string, series: string): number {
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return 0;
}

const coapRecords = (r: HttpReceiver) => r.records.filter((x) => x.source === 'coap');

describe('coap server', () => {
  it('CON and NON POSTs arrive upstream with topic, device and content type', async () => {
    const { d, r } = await setup();
    const p = await peer(d);
    const con = await p.request({
      path: ['t', 'plant', 'line-1', 'temp'],
      query: ['d=sensor-7'],
      contentFormat: 50,
      payload: '{"c":21.5}',
    });
    expect(con?.type).toBe('ACK');
    expect(con?.code).toBe('2.04');
    const non = await p.request({
      confirmable: false,
      method: 'PUT',
      path: ['t', 'plant', 'hum'],
      contentFormat: 0,
      payload: 'x=1',
    });
    expect(non?.type).toBe('NON');
    expect(non?.code).toBe('2.04');
    const other = await p.request({
      path: ['t', 'raw'],
      contentFormat: 60,
      payload: Buffer.from([0xa1, 1, 2]),
    });
    expect(other?.code).toBe('2.04');
    const unregistered = await p.request({ path: ['t', 'odd'], contentFormat: 65000, payload: 'o' });
    expect(unregistered?.code).toBe('2.04');
    const none = await p.request({ path: ['t', 'none'], payload: 'n' });
    expect(none?.code).toBe('2.04');
    await eventually(() => coapRecords(r).length >= 5, 'five coap records delivered');
    const got = coapRecords(r);
    expect(got.map((x) => [x.topic, x.device, x.contentType ?? null, x.payload])).toEqual([
      ['plant/line-1/temp', 'sensor-7', 'application/json', '{"c":21.5}'],
      ['plant/hum', `127.0.0.1:${p.port}`, 'text/plain;charset=utf-8', 'x=1'],
      ['raw', `127.0.0.1:${p.port}`, 'application/cbor', Buffer.from([0xa1, 1, 2]).toString('utf8')],
      ['odd', `127.0.0.1:${p.port}`, '65000', 'o'],
      ['none', `127.0.0.1:${p.port}`, '', 'n'],
    ]);
  });

  it('node-coap as the client: a CON POST is acknowledged 2.04 and delivered', async () => {
    const { d, r } = await setup();
    const res = await new Promise<{ code: string }>((resolve, reject) => {
      const req = coapRequest({
        hostname: '127.0.0.1',
        port: d.coapPort,
        method: 'POST',
        pathname: '/t/nc/a',
        query: 'd=nodecoap',
        confirmable: true,
      });
      req.setOption('Content-Format', 'application/json');
      req.on('response', (res) => {
        res.resume();
        resolve({ code: res.code });
      });
      req.on('error', reject);
      req.end('{"v":1}');
    });
    expect(res.code).toBe('2.04');
    await eventually(() => coapRecords(r).length >= 1, 'the node-coap record delivered');
    expect(coapRecords(r)[0]).toMatchObject({
      topic: 'nc/a',
      device: 'nodecoap',
      contentType: 'application/json',
      payload: '{"v":1}',
    });
  });

  it('a retransmitted CON (same message id) is journaled once and answered twice, the same way', async () => {
    const { d, r } = await setup();
    const p = await peer(d);
    const mid = p.newMessageId();
    const token = p.newToken();
    const bytes = p.encode({ path: ['t', 'dup'], payload: 'once', messageId: mid, token });
    // Both copies leave before the first answer can come back: the second finds the first
    // still waiting for its commit (node-coap's cache misses exactly this one).
    p.sendRaw(bytes);
    p.sendRaw(bytes);
    const acks = () =>
      p.received.filter((x): x is CoapResponse => !Buffer.isBuffer(x) && x.messageId === mid);
    await eventually(() => acks().length >= 1, 'the first ACK');
    // A third copy after the answer: answered again from the table.
    p.sendRaw(bytes);
    await eventually(() => acks().length >= 2, 'the retransmission answered again');
    expect(acks().every((a) => a.type === 'ACK' && a.code === '2.04' && a.token.equals(token))).toBe(true);
    // A new message after it, so the journal has certainly committed anything the copies added.
    expect((await p.request({ path: ['t', 'dup'], payload: 'next' }))?.code).toBe('2.04');
    await eventually(() => coapRecords(r).length >= 2, 'records delivered');
    expect(coapRecords(r).map((x) => x.payload)).toEqual(['once', 'next']);
    const status = await d.status();
    expect(status.journal.counters.appended).toBe(2);
    const coap = status.sources.find((s) => s.name === 'coap');
    expect(coap?.counters.duplicates).toBeGreaterThanOrEqual(2);
    expect(metric(await d.metrics(), 'edgeferry_coap_duplicates_total')).toBeGreaterThanOrEqual(2);
  });

  it('garbage is dropped or reset, counted, and the server keeps answering others', async () => {
    const { d, r } = await setup();
    const good = await peer(d);
    const bad = await peer(d);
    expect((await good.request({ path: ['t', 'g'], payload: 'before' }))?.code).toBe('2.04');
    // Random bytes (bounded loop, fixed seed so a failure can be repeated).
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    for (let i = 0; i < 200; i++) bad.sendRaw(Buffer.from(Array.from({ length: 1 + (i % 40) }, rand)));
    // Truncated headers.
    bad.sendRaw(Buffer.from([0x40]));
    bad.sendRaw(Buffer.from([0x40, 0x02, 0x12]));
    // A token length of 9 (reserved), and a token longer than the datagram.
    bad.sendRaw(Buffer.from([0x49, 0x02, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    bad.sendRaw(Buffer.from([0x48, 0x02, 0x00, 0x02, 1, 2]));
    // Option delta 15 without being the payload marker; an option length running past the end;
    // a payload marker with no payload.
    const midA = 0x0a0a;
    bad.sendRaw(Buffer.from([0x40, 0x02, midA >> 8, midA & 0xff, 0xf1, 0x00]));
    bad.sendRaw(Buffer.from([0x40, 0x02, 0x0b, 0x0b, 0xb5, 0x74]));
    bad.sendRaw(Buffer.from([0x40, 0x02, 0x0c, 0x0c, 0xb1, 0x74, 0xff]));
    // An unknown critical option (number 9, OSCORE, unsupported) gets 4.02.
    const badOption = await bad.request({
      path: ['t', 'g'],
      payload: 'x',
      options: [{ name: '9', value: Buffer.from([1]) }],
    });
    expect(badOption?.code).toBe('4.02');
    // The malformed CON with a readable header was reset (RFC 7252 §4.2).
    await eventually(
      () => bad.received.some((x) => !Buffer.isBuffer(x) && x.type === 'RST' && x.messageId === midA),
      'RST for the malformed CON',
    );
    expect((await good.request({ path: ['t', 'g'], payload: 'after' }))?.code).toBe('2.04');
    await eventually(() => coapRecords(r).length >= 2, 'the good records delivered');
    expect(coapRecords(r).map((x) => x.payload)).toEqual(['before', 'after']);
    const text = await d.metrics();
    expect(metric(text, 'edgeferry_coap_malformed_total')).toBeGreaterThanOrEqual(7);
    expect(metric(text, 'edgeferry_ingress_protocol_errors_total{protocol="coap"}')).toBeGreaterThanOrEqual(
      8,
    );
    await d.waitForLog((l) => l.component === 'coap' && l.msg === 'malformed coap datagram: dropped');
    expect(d.proc.exitCode).toBe(null);
  });

  it('answers 4.04 for an unknown path, 4.00 for an empty topic, 4.05 for other methods, 4.13 past maxPayloadBytes', async () => {
    const { d, r } = await setup({ coap: { maxPayloadBytes: 1024 } });
    const p = await peer(d);
    expect((await p.request({ path: ['nope', 'x'], payload: 'a' }))?.code).toBe('4.04');
    expect((await p.request({ path: ['t'], payload: 'a' }))?.code).toBe('4.00');
    expect((await p.request({ path: ['t', 'a', '+'], payload: 'a' }))?.code).toBe('4.00');
    expect((await p.request({ method: 'GET', path: ['t', 'a'] }))?.code).toBe('4.05');
    expect((await p.request({ method: 'DELETE', path: ['t', 'a'] }))?.code).toBe('4.05');
    const big = await p.request({ path: ['t', 'big'], payload: Buffer.alloc(1025, 0x61) });
    expect(big?.code).toBe('4.13');
    expect(big?.uint(60)).toBe(1024); // Size1: the largest body taken
    const fits = await p.request({ path: ['t', 'fits'], payload: Buffer.alloc(1024, 0x62) });
    expect(fits?.code).toBe('2.04');
    // GET /.well-known/core lists the telemetry resource in link format (ct 40).
    const wk = await p.request({ method: 'GET', path: ['.well-known', 'core'] });
    expect(wk?.code).toBe('2.05');
    expect(wk?.uint(12)).toBe(40);
    expect(wk?.payload.toString()).toBe('</t>;rt="edgeferry.telemetry";ct="0 42 50 60 110 112"');
    await eventually(() => coapRecords(r).length >= 1, 'the record that fits delivered');
    expect(coapRecords(r).map((x) => x.topic)).toEqual(['fits']);
    const text = await d.metrics();
    expect(metric(text, 'edgeferry_coap_requests_total{method="POST",code="4.04"}')).toBe(1);
    expect(metric(text, 'edgeferry_coap_requests_total{method="POST",code="4.13"}')).toBe(1);
    expect(metric(text, 'edgeferry_coap_requests_total{method="GET",code="4.05"}')).toBe(1);
    expect(metric(text, 'edgeferry_coap_requests_total{method="POST",code="2.04"}')).toBe(1);
    const status = await d.status();
    const src = status.sources.find((s) => s.name === 'coap') as unknown as {
      addresses: { port: number };
      counters: { requests: Record<string, number> };
    };
    expect(src.addresses.port).toBe(d.coapPort);
    expect(src.counters.requests['POST 4.00']).toBe(2);
  });

  it('a journal full under onFull: reject answers 5.03 with Max-Age, and never journals the record', async () => {
    const { d, r } = await setup({ journal: { maxBytes: '4KiB', onFull: 'reject' } });
    r.respond = () => ({ status: 503 }); // nothing drains: the journal stays full
    const p = await peer(d);
    let refused: CoapResponse | null = null;
    const acked: string[] = [];
    for (let i = 0; i < 200 && refused === null; i++) {
      const payload = `f${i}-${'x'.repeat(150)}`;
      const res = await p.request({ path: ['t', 'full'], payload });
      if (res?.code === '2.04') acked.push(payload);
      else refused = res;
    }
    expect(refused?.code).toBe('5.03');
    expect(refused?.uint(14)).toBeGreaterThan(0); // Max-Age: when to retry
    expect(acked.length).toBeGreaterThan(0);
    const status = await d.status();
    expect(status.journal.counters.rejected).toBeGreaterThan(0);
    expect(status.journal.counters.appended).toBe(acked.length);
    expect(metric(await d.metrics(), 'edgeferry_ingress_refused_total{protocol="coap"}')).toBeGreaterThan(0);
  });

  it('a 4 KiB block-wise payload (Block1, new token per block) arrives whole', async () => {
    const { d, r } = await setup({ coap: { maxPayloadBytes: 8192 } });
    const p = await peer(d);
    const body = Buffer.from(Array.from({ length: 4096 }, (_, i) => 0x41 + (i % 26)));
    const szx = 2; // 64-byte blocks
    const blocks = 4096 / 64;
    for (let n = 0; n < blocks; n++) {
      const more = n < blocks - 1 ? 1 : 0;
      const res = await p.request({
        path: ['t', 'blob'],
        contentFormat: 42,
        block1: (n << 4) | (more << 3) | szx,
        payload: body.subarray(n * 64, n * 64 + 64),
      });
      expect(res?.code).toBe(more ? '2.31' : '2.04');
      expect(res?.uint(27)).toBe((n << 4) | (more << 3) | szx);
    }
    // A block out of order is 4.08 Request Entity Incomplete (RFC 7959 §2.9.2).
    expect(
      (await p.request({ path: ['t', 'blob'], block1: (5 << 4) | 8 | szx, payload: body.subarray(0, 64) }))
        ?.code,
    ).toBe('4.08');
    // A transfer past maxPayloadBytes is 4.13 at the block that crosses it.
    let code = '';
    for (let n = 0; n < 200 && code !== '4.13'; n++) {
      code =
        (await p.request({ path: ['t', 'huge'], block1: (n << 4) | 8 | 6, payload: Buffer.alloc(1024) }))
          ?.code ?? 'none';
    }
    expect(code).toBe('4.13');
    await eventually(() => coapRecords(r).length >= 1, 'the block-wise record delivered');
    expect(coapRecords(r).map((x) => [x.topic, x.contentType, x.payload])).toEqual([
      ['blob', 'application/octet-stream', body.toString()],
    ]);
    expect((await d.status()).journal.counters.appended).toBe(1);
  });
});
