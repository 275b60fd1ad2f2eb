// The MQTT bridge sink through the shared sink suite, against a steerable MQTT 5 broker
// (test/helpers/mqtt-upstream.ts). "Refuse" is a PUBACK reason code, which answers one message:
// the record is dead-lettered alone and the records after it in its batch go on
// (`refusesEachRecord`), where an HTTP or gRPC upstream refuses the whole call.

import { MqttSink } from '../../src/sinks/mqtt/mqtt-sink.ts';
import { bridgeOptions, MqttUpstream } from '../helpers/mqtt-upstream.ts';
import { type SinkDriver, type SuiteUpstream, sinkSuite } from './sink-suite.ts';

class MqttSuiteUpstream implements SuiteUpstream {
  readonly broker = new MqttUpstream();
  answer: SuiteUpstream['answer'] = () => 'accept';

  constructor() {
    this.broker.answer = (m) => this.answer([m.payload.toString()]);
  }

  calls(): number {
    return this.broker.publishes;
  }

  accepted() {
    return this.broker.accepted.map((m) => {
      const id = String(m.userProperties['edgeferry-record-id']);
      return { seq: Number(id.slice(id.lastIndexOf('-') + 1)), id, payload: m.payload.toString() };
    });
  }

  down(): Promise<void> {
    return this.broker.stop();
  }

  up(): Promise<void> {
    return this.broker.start(this.broker.port);
  }

  close(): Promise<void> {
    return this.broker.stop();
  }
}

const mqtt: SinkDriver<MqttSuiteUpstream> = {
  name: 'mqtt',
  refusesEachRecord: true,
  async startUpstream() {
    const u = new MqttSuiteUpstream();
    await u.broker.start();
    return u;
  },
  createSink: (u, opts) =>
    new MqttSink(
      bridgeOptions(u.broker.url, { name: opts.name, node: 'suite-node', connectTimeoutMs: opts.timeoutMs }),
    ),
};

sinkSuite(mqtt);
