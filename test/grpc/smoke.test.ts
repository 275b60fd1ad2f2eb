import { status } from '@grpc/grpc-js';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcIngestReceiver } from '../../bench/receivers/grpc-ingest-receiver.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { gatewayClient, healthClient, type StreamedRecord } from './grpc-client.ts';

describe('gRPC smoke', () => {
  let daemon: DaemonHandle | null = null;
  let rx: GrpcIngestReceiver | null = null;
  afterEach(async () => {
    await daemon?.kill();
    await rx?.stop();
  });

  it('Subscribe earliest then live; grpc sink delivers; health SERVING; 400-like status dead-letters', async () => {
    rx = new GrpcIngestReceiver();
    await rx.start();
    rx.respond = (req) =>
      req.records.some((r) => r.payload.toString() === 'poison') ? status.INVALID_ARGUMENT : status.OK;
    const dir = tempDir();
    daemon = await startDaemon(
      dir,
      writeConfig(
        dir,
        baseConfig(dir, {
          sinks: [{ name: 'up', type: 'grpc', target: rx.target, batch: { maxRecords: 1 } }],
        }),
      ),
    );
    const target = `127.0.0.1:${daemon.grpcPort}`;
    const health = healthClient(target);
    const h = await new Promise<{ status: string }>((res, rej) =>
      health.Check({ service: '' }, (e: Error, r: { status: string }) => (e ? rej(e) : res(r))),
    );
    expect(h.status).toBe('SERVING');

    const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { clientId: 'd1' });
    await dev.publishAsync('a/1', 'one', { qos: 1 });
    await dev.publishAsync('a/2', 'poison', { qos: 1 });
    const client = gatewayClient(target);
    const got: StreamedRecord[] = [];
    const stream = client.Subscribe({ filters: ['a/#'], start: 'START_EARLIEST' });
    stream.on('data', (r: StreamedRecord) => got.push(r));
    stream.on('error', () => {});
    await eventually(() => got.length === 2, 'replayed 2');
    await dev.publishAsync('a/3', 'three', { qos: 1 });
    await eventually(() => got.length === 3, 'live 1');
    expect(got.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(got.map((r) => r.payload.toString())).toEqual(['one', 'poison', 'three']);
    expect(got[0]).toMatchObject({ topic: 'a/1', device: 'd1', source: 'mqtt' });
    await eventually(() => rx!.records.length === 2, 'grpc sink delivered');
    expect(rx.records.map((r) => r.payload.toString())).toEqual(['one', 'three']);
    await eventually(async () => (await daemon!.status()).sinks[0].deadLettered === 1, 'dead-lettered');
    stream.cancel();
    await dev.endAsync();
    client.close();
    health.close();
  });
});
