// The MQTT broker source in this process on a real port, over a real journal (LevelDB in a
// temporary directory): for tests that look at the broker's session state and the journal
// directly. Options come from the config schema's defaults, then the test's overrides.

import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { configSchema } from '../../src/config/schema.ts';
import type { Logger } from '../../src/core/logger.ts';
import { decodeRecord } from '../../src/core/record.ts';
import { Journal, type JournalOptions } from '../../src/journal/journal.ts';
import { deriveBudget } from '../../src/memory/budget.ts';
import { explicitSettings } from '../../src/memory/plan.ts';
import {
  type MqttBrokerOptions,
  MqttBrokerSource,
} from '../../src/sources/mqtt-broker/mqtt-broker-source.ts';
import { tempDir } from '../helpers/daemon.ts';
import { type ConnectOptions, connectPacket, splitPackets, type WirePacket } from '../helpers/mqtt-wire.ts';

export interface LogLine {
  level: string;
  obj: object;
  msg: string;
}

export interface BrokerHarness {
  source: MqttBrokerSource;
  journal: Journal;
  port: number;
  logs: LogLine[];
  /** Every committed record's payload, in journal order. */
  journaledPayloads(): Promise<string[]>;
  stop(): Promise<void>;
}

function recordingLogger(lines: LogLine[]): Logger {
  const at = (level: string) => (obj: object, msg: string) => {
    lines.push({ level, obj, msg });
  };
  return { debug: () => {}, info: at('info'), warn: at('warn'), error: at('error') };
}

export async function startBroker(
  overrides: Partial<MqttBrokerOptions> = {},
  journalOverrides: Partial<JournalOptions> = {},
): Promise<BrokerHarness> {
  const dir = tempDir('edgeferry-broker-');
  const logs: LogLine[] = [];
  const log = recordingLogger(logs);
  const journal = await Journal.open(
    {
      path: join(dir, 'journal'),
      maxBytes: 1024 ** 3,
      onFull: 'drop-oldest',
      fsync: false,
      groupCommit: { maxRecords: 4096, maxDelayMs: 0 },
      maxPendingBytes: 16 * 1024 * 1024,
      lockWaitMs: 1000,
      ...journalOverrides,
    },
    log,
  );
  const config = configSchema.parse({ mqtt: { host: '127.0.0.1', port: 0 } });
  // The queue bounds the memory budget sizes: their defaults, as without a memory limit.
  const { budget } = deriveBudget(null, 'none', explicitSettings(config));
  const defaults = {
    ...config.mqtt,
    maxQueuedBytes: budget.mqttQueuedBytes,
    maxQueuedBytesTotal: budget.mqttQueuedBytesTotal,
    maxQueuedMessagesTotal: budget.mqttQueuedMessagesTotal,
  };
  const source = new MqttBrokerSource({ ...defaults, ...overrides } as MqttBrokerOptions, journal, log);
  await source.start();
  return {
    source,
    journal,
    port: Number(source.addresses().port),
    logs,
    async journaledPayloads() {
      await journal.sync();
      const out: string[] = [];
      let from = journal.firstRetainedSeq;
      for (;;) {
        const batch = await journal.readBatch(from, 10_000, 64 * 1024 * 1024);
        for (const r of batch.records) out.push(decodeRecord(r.body).payload.toString());
        if (batch.next > journal.lastCommittedSeq || batch.next === from) break;
        from = batch.next;
      }
      return out;
    },
    async stop() {
      await source.stop();
      await journal.close();
    },
  };
}

/** A raw MQTT connection: bytes in, packets out, as the test wrote them. */
export interface RawClient {
  socket: Socket;
  /** Packets received so far (whole ones). */
  packets(): WirePacket[];
  closed: Promise<unknown>;
}

export async function rawClient(
  port: number,
  clientId: string,
  opts: ConnectOptions = {},
): Promise<RawClient> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = once(socket, 'close');
  socket.write(connectPacket(clientId, opts));
  const packets = () => splitPackets(Buffer.concat(chunks)).packets;
  const deadline = Date.now() + 10_000;
  while (!packets().some((p) => p.type === 2)) {
    if (Date.now() > deadline) throw new Error('no CONNACK within 10 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  return { socket, packets, closed };
}
