// The `type: mqtt` bridge sink from its config section (registered in src/main.ts).

import type * as z from 'zod';
import type { Sink, SinkContext } from '../../core/pipeline.ts';
import { type mqttSinkConfig, sinkClientId } from './config.ts';
import { MqttSink } from './mqtt-sink.ts';

export function createSink(cfg: z.output<typeof mqttSinkConfig>, ctx: SinkContext): Sink {
  return new MqttSink({
    name: cfg.name,
    url: cfg.url,
    node: ctx.nodeId,
    clientId: sinkClientId(cfg.clientId, ctx.nodeId),
    username: cfg.username,
    password: cfg.password,
    passwordFile: cfg.passwordFile,
    tls: cfg.tls,
    protocolVersion: cfg.protocolVersion,
    topic: cfg.topic,
    qos: cfg.qos,
    retain: cfg.retain,
    window: cfg.window,
    keepaliveSeconds: cfg.keepaliveSeconds,
    // A broker that takes the connection but never answers it is given up with the batch.
    connectTimeoutMs: cfg.timeoutMs,
    log: ctx.log,
  });
}
