// The read guard's cost per packet (framing, size limit and the MQTT 3.1.1 conformance checks of
// src/sources/mqtt-broker/conformance.ts), in one process without sockets: QoS 1 PUBLISH packets
// of the mqtt-qos1 bench (200 B payload) fed in 64 KiB reads, ASCII and non-ASCII topics.
//   node bench/tools/packet-guard-cost.ts [packets]

import { PacketSizeGuard } from '../../src/sources/mqtt-broker/packet-size-guard.ts';
import { connectPacket, publishPacket } from '../../test/helpers/mqtt-wire.ts';

const total = Number(process.argv[2] ?? 2_000_000);

function run(topic: string): number {
  const one = publishPacket(topic, Buffer.alloc(200, 0x61), 1, 1);
  const perChunk = Math.floor((64 * 1024) / one.length);
  const chunk = Buffer.concat(Array.from({ length: perChunk }, () => one));
  const guard = new PacketSizeGuard(256 * 1024);
  guard.feed(connectPacket('bench'));
  const t0 = process.hrtime.bigint();
  // Reads do not end on packet boundaries: feed the chunk in two uneven parts.
  const cut = Math.floor(chunk.length / 3);
  for (let n = 0; n < total; n += perChunk) {
    if (guard.feed(chunk.subarray(0, cut)) !== 'ok' || guard.feed(chunk.subarray(cut)) !== 'ok')
      throw new Error('refused a good packet');
  }
  return Number(process.hrtime.bigint() - t0) / total;
}

for (const topic of ['bench/t/0', 'capteurs/température/日本/😀']) {
  run(topic); // warm-up
  console.log(`${JSON.stringify(topic)}: ${run(topic).toFixed(1)} ns per QoS 1 PUBLISH`);
}
