// The embedded broker's `mqtt:` section (README: configuration, MQTT broker bounds).

import * as z from 'zod';
import { bytes, integer, nonEmpty, nullToUndefined, section } from '../../config/fields.ts';
import { mqttLimitsConfig } from './limits-config.ts';
import { mqttSecurityShape, plainPort } from './security-config.ts';

export const mqttConfig = section({
  enabled: z.boolean().default(true),
  host: nonEmpty().default('0.0.0.0'),
  port: plainPort(),
  maxPacketBytes: bytes().prefault('256KiB'),
  // mosquitto's max_queued_messages / max_queued_bytes: per client, what waits to be sent
  // to it (in its socket while connected, in its session while a clean: false client is away).
  maxQueuedMessages: integer(1).default(1000),
  // The byte bounds below default to 1 MiB, 64 MiB and 100 000, or to what memory.limit
  // leaves for them (src/memory/budget.ts).
  maxQueuedBytes: z.preprocess(nullToUndefined, bytes().optional()),
  // All away sessions together; past it the oldest message held for any of them goes.
  maxQueuedMessagesTotal: z.preprocess(nullToUndefined, integer(1).optional()),
  maxQueuedBytesTotal: z.preprocess(nullToUndefined, bytes().optional()),
  maxRetainedMessages: integer(1).default(10_000),
  maxRetainedBytes: bytes().prefault('16MiB'),
  // Incoming QoS 2 messages awaiting PUBREL (EMQX's max_awaiting_rel), per client and in all.
  maxAwaitingRel: integer(1, 65535).default(1000),
  maxAwaitingRelTotal: integer(1).default(100_000),
  ...mqttSecurityShape,
  limits: mqttLimitsConfig,
});
