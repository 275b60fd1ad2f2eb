// The conformance checks in the real daemon (test/mqtt/conformance.test.ts has every rule): a
// PUBLISH whose topic is ill-formed UTF-8 never reaches the sink, and is counted under its rule
// in /metrics with a log line naming the rule, while a well-formed client goes on.

import { once } from 'node:events';
import { connect } from 'node:net';
import mqtt from 'mqtt';
import { afterEach, expect, it } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { connectPacket, publishPacket } from '../helpers/mqtt-wire.ts';

let daemon: DaemonHandle | null = null;
let receiver: HttpReceiver | null = null;

afterEach(async () => {
  await daemon?.kill();
  await receiver?.stop();
});

it('an ill-formed UTF-8 topic closes the connection, is counted by rule and never reaches the sink', async () => {
  receiver = new HttpReceiver();
  await receiver.start();
  const dir = tempDir();
  const sink = { name: 'up', type: 'http', url: receiver.url, payloadEncoding: 'utf8' };
  daemon = await startDaemon(dir, writeConfig(dir, baseConfig(dir, { sinks: [sink] })));
  const good = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { reconnectPeriod: 0 });
  await good.publishAsync('sensors/ü', 'before', { qos: 1 });

  const s = connect(daemon.mqttPort, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  const closed = once(s, 'close');
  const badTopic = Buffer.from([0x73, 0x2f, 0xc3, 0x28]); // "s/" then a lead byte without its continuation
  s.write(Buffer.concat([connectPacket('bad-utf8'), publishPacket(badTopic, Buffer.from('bad'), 1, 1)]));
  await closed;

  await good.publishAsync('sensors/ü', 'after', { qos: 1 });
  await eventually(() => receiver!.records.length >= 2, 'the good records delivered');
  expect(receiver.records.map((r) => `${r.topic}=${r.payload}`)).toEqual([
    'sensors/ü=before',
    'sensors/ü=after',
  ]);
  expect(good.connected).toBe(true);
  await good.endAsync();

  expect(await daemon.metrics()).toMatch(
    /^edgeferry_mqtt_protocol_errors_total\{rule="MQTT-1\.5\.3-1"\} 1$/m,
  );
  const line = await daemon.waitForLog((l) => l.rule === 'MQTT-1.5.3-1');
  expect(line.msg).toContain('[MQTT-1.5.3-1]');
  expect(line.reason).toMatch(/UTF-8.*PUBLISH topic/);
  expect((await daemon.status()).journal.counters.appended).toBe(2);
});
