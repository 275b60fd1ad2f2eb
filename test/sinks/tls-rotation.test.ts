// Client certificate rotation in the HTTP and gRPC sinks: files rewritten in place (as
// cert-manager and SPIRE do) are used by the next request, which the upstream sees by the
// certificate's CN, while a request in flight on the old connection completes; broken files are
// refused with an error while the last good ones stay in use. Real mTLS servers on 127.0.0.1.

import { copyFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Server, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { OutboundBatch } from '../../src/core/pipeline.ts';
import { encodeRecord } from '../../src/core/record.ts';
import { GrpcSink } from '../../src/sinks/grpc/grpc-sink.ts';
import { HttpSink } from '../../src/sinks/http/http-sink.ts';
import { bindMtls, generatePki, issueLeaf, type TestPki } from '../grpc/certs.ts';
import { memoryLog } from '../grpc/in-process.ts';
import { eventually, tempDir } from '../helpers/daemon.ts';

let pki: TestPki;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

beforeAll(() => {
  pki = generatePki(tempDir('edgeferry-pki-'));
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function batch(seq: number): OutboundBatch {
  const body = encodeRecord({
    ts: 1,
    source: 'test',
    device: 'd',
    topic: `t/${seq}`,
    payload: Buffer.from('x'),
  });
  return { epoch: 'e', records: [{ seq, ts: 1, body }] };
}

/** The client certificate and key in files of their own, rewritten by the test. */
function liveClientFiles(): { certFile: string; keyFile: string } {
  const dir = tempDir('edgeferry-live-tls-');
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  copyFileSync(pki.clientCertFile, certFile);
  copyFileSync(pki.clientKeyFile, keyFile);
  return { certFile, keyFile };
}

/**
 * An upstream that records the client certificate's CN per request; `hold()` makes it keep the
 * next request unanswered until the returned function is called.
 */
interface Upstream {
  seen: string[];
  connections: number;
  hold(): () => void;
}

function holder(): { up: Upstream; wait(): Promise<void> } {
  let held: Promise<void> | null = null;
  const up: Upstream = {
    seen: [],
    connections: 0,
    hold() {
      let release = () => {};
      held = new Promise<void>((r) => {
        release = r;
      });
      return release;
    },
  };
  return {
    up,
    wait: () => {
      const h = held;
      held = null;
      return h ?? Promise.resolve();
    },
  };
}

async function httpsUpstream(): Promise<Upstream & { url: string }> {
  const { up, wait } = holder();
  const server: HttpsServer = createServer(
    { key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const cn = String((req.socket as TLSSocket).getPeerCertificate().subject.CN);
      req.resume();
      req.on('end', async () => {
        up.seen.push(cn);
        await wait();
        res.writeHead(200).end();
      });
    },
  );
  server.on('secureConnection', () => up.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  const port = (server.address() as { port: number }).port;
  return Object.assign(up, { url: `https://localhost:${port}/ingest` });
}

async function grpcUpstream(): Promise<Upstream & { target: string }> {
  const { up, wait } = holder();
  const server = new Server();
  const identity = (b: Buffer) => b;
  server.register(
    '/edgeferry.v1.Ingest/Push',
    async (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
      up.seen.push(String(call.getAuthContext().sslPeerCertificate?.subject.CN));
      await wait();
      cb(null, Buffer.alloc(0));
    },
    identity,
    identity,
    'unary',
  );
  const port = await bindMtls(server, pki);
  cleanups.push(() => server.forceShutdown());
  return Object.assign(up, { target: `localhost:${port}` });
}

type AnySink = (HttpSink | GrpcSink) & { tlsReloads: { reloads: number; reloadErrors: number } | null };

const cases: [
  string,
  (
    files: { certFile: string; keyFile: string },
    log: ReturnType<typeof memoryLog>,
  ) => Promise<{ sink: AnySink; up: Upstream }>,
][] = [
  [
    'http sink',
    async (files, log) => {
      const up = await httpsUpstream();
      const sink = new HttpSink({
        name: 'up',
        url: up.url,
        payloadEncoding: 'base64',
        timeoutMs: 10_000,
        tls: { caFile: pki.caFile, ...files },
        log,
        tlsReloadMs: 50,
      });
      return { sink, up };
    },
  ],
  [
    'grpc sink',
    async (files, log) => {
      const up = await grpcUpstream();
      const sink = new GrpcSink({
        name: 'up',
        target: up.target,
        node: 'n',
        timeoutMs: 10_000,
        maxMessageBytes: 4 * 1024 * 1024,
        tls: { caFile: pki.caFile, ...files },
        log,
        tlsReloadMs: 50,
      });
      return { sink, up };
    },
  ],
];

describe.each(cases)('%s: client certificate rotation', (_name, make) => {
  it('the next request uses the renewed certificate while one in flight completes; broken files are refused, the last good kept', async () => {
    const files = liveClientFiles();
    const log = memoryLog();
    const { sink, up } = await make(files, log);
    cleanups.push(() => sink.close());
    const never = new AbortController().signal;

    await sink.send(batch(1), never);
    expect(up.seen).toEqual(['client']);

    // A request held by the upstream across the rotation.
    const release = up.hold();
    const inFlight = sink.send(batch(2), never);
    await eventually(() => up.seen.length === 2, 'the second request reached the upstream');
    const renewed = issueLeaf(pki, `client-renewed-${_name.split(' ')[0]}`, 'client');
    writeFileSync(files.certFile, renewed.cert);
    writeFileSync(files.keyFile, renewed.key);
    await eventually(() => sink.tlsReloads?.reloads === 1, 'the renewed files taken');
    await sink.send(batch(3), never);
    release();
    await inFlight;
    const renewedCn = `client-renewed-${_name.split(' ')[0]}`;
    expect(up.seen).toEqual(['client', 'client', renewedCn]);

    // Truncated, then a key that is not the certificate's: both refused, the renewed pair kept.
    writeFileSync(files.keyFile, renewed.key.subarray(0, 40));
    await eventually(() => sink.tlsReloads?.reloadErrors === 1, 'the truncated key refused');
    writeFileSync(files.keyFile, pki.otherClientKey);
    await eventually(() => sink.tlsReloads?.reloadErrors === 2, 'the mismatched key refused');
    expect(log.lines.filter((l) => l.level === 'error').map((l) => l.msg)).toEqual([
      'new TLS files refused: the previous ones stay in use',
      'new TLS files refused: the previous ones stay in use',
    ]);
    await sink.send(batch(4), never);
    expect(up.seen.at(-1)).toBe(renewedCn);
    expect(sink.tlsReloads).toEqual({ reloads: 1, reloadErrors: 2 });

    // The right key arrives: taken.
    writeFileSync(files.keyFile, renewed.key);
    await eventually(() => sink.tlsReloads?.reloads === 2, 'the fixed pair taken');
    await sink.send(batch(5), never);
    expect(up.seen.at(-1)).toBe(renewedCn);
  });
});

describe('http sink tls config', () => {
  it('takes the client TLS files for an https url only', async () => {
    const { parseConfig } = await import('../../src/config/load.ts');
    const sink = (url: string) => ({ sinks: [{ name: 'a', type: 'http', url, tls: { caFile: '/ca.crt' } }] });
    expect(parseConfig(sink('https://up.example/x'), {}).sinks[0]).toMatchObject({
      tls: { caFile: '/ca.crt' },
    });
    expect(() => parseConfig(sink('http://up.example/x'), {})).toThrow('sinks[0].tls: needs an https url');
  });
});
