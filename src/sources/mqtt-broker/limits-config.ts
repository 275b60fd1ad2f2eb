// The embedded broker's `mqtt.limits:` section (README: MQTT broker limits). Defaults sit far
// above what a site's devices do; a publish rate is off unless set, since one client (a line
// controller, a bridge) may rightly carry the traffic of many devices.

import * as z from 'zod';
import { bytes, integer, section } from '../../config/fields.ts';

export const RATE_EXCEED_ACTIONS = ['disconnect', 'drop'] as const;

export const mqttLimitsConfig = section({
  // Each open connection costs the broker tens of KB before it sends anything.
  maxConnections: integer(1).default(5000),
  // MQTT allows 65535 bytes; AWS IoT stops at 256. Topics are stored with every record.
  maxTopicBytes: bytes().prefault(1024),
  // aedes' router cannot take more than 100 levels, so neither can this.
  maxTopicLevels: integer(1, 100).default(32),
  // QoS 1/2 publishes of one connection awaiting their commit (and so their ack).
  maxInflight: integer(1, 65535).default(10_000),
  publishRate: z
    .strictObject({
      messagesPerSecond: z.number().positive({ error: 'must be a number > 0' }),
      burst: integer(1).optional(),
      onExceed: z.enum(RATE_EXCEED_ACTIONS).default('disconnect'),
    })
    .transform((r) => ({ ...r, burst: r.burst ?? Math.max(1, Math.ceil(r.messagesPerSecond)) }))
    .optional(),
});
