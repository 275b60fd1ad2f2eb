// The `type: mqtt` sink's config (README: My cloud speaks MQTT).

import * as z from 'zod';
import {
  clientTls,
  componentName,
  describeValue,
  filePath,
  integer,
  nonEmpty,
  retry,
  sinkBatch,
  sinkRoutes,
  timerMs,
} from '../../config/fields.ts';
import { templateProblem } from './topic-template.ts';

const mqttUrl = z.string().refine(
  (s) => {
    if (!URL.canParse(s)) return false;
    const u = new URL(s);
    return (u.protocol === 'mqtt:' || u.protocol === 'mqtts:') && u.hostname !== '';
  },
  { error: (iss) => `must be an mqtt:// or mqtts:// URL (got ${describeValue(iss.input)})` },
);

export const mqttSinkConfig = z
  .strictObject({
    name: componentName(),
    type: z.literal('mqtt'),
    url: mqttUrl,
    routes: sinkRoutes(),
    // Default `edgeferry-<node.id>` (set where the node id is known, src/main.ts).
    clientId: nonEmpty().max(65535, { error: 'must be at most 65535 characters' }).optional(),
    username: nonEmpty().optional(),
    password: z.string().optional(),
    // Read at each connect, so a rotated Kubernetes Secret is picked up without a restart.
    passwordFile: filePath().optional(),
    tls: clientTls(),
    // 5 by default: Receive Maximum (the window's upper bound), PUBACK reason codes and the user
    // property carrying the record id exist only in MQTT 5.
    protocolVersion: z
      .union([z.literal(4), z.literal(5)], {
        error: (iss) => `expected 4 (MQTT 3.1.1) or 5 (got ${describeValue(iss.input)})`,
      })
      .default(5),
    topic: z
      .string()
      .superRefine((t, ctx) => {
        const problem = templateProblem(t);
        if (problem) ctx.addIssue({ code: 'custom', message: problem, input: t });
      })
      .default('edge/{node}/{topic}'),
    qos: z
      .union([z.literal(0), z.literal(1)], {
        error: (iss) => `expected 0 or 1 (got ${describeValue(iss.input)})`,
      })
      .default(1),
    retain: z.boolean().default(false),
    // Publishes awaiting PUBACK at once; never more than the broker's Receive Maximum.
    window: integer(1, 65535).default(100),
    // A silent link (half-open, broker frozen) is given up after 1.5 x this.
    keepaliveSeconds: integer(1, 65535).default(30),
    timeoutMs: timerMs(1).prefault('10s'),
    batch: sinkBatch(),
    retry,
  })
  .superRefine((c, ctx) => {
    if (c.password !== undefined && c.passwordFile !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['passwordFile'],
        message: 'password and passwordFile exclude each other',
        input: c.passwordFile,
      });
    }
    if ((c.password !== undefined || c.passwordFile !== undefined) && c.username === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['username'],
        message: 'required with password or passwordFile',
        input: c.username,
      });
    }
    if (c.tls && URL.canParse(c.url) && new URL(c.url).protocol !== 'mqtts:') {
      ctx.addIssue({
        code: 'custom',
        path: ['url'],
        message: `must be mqtts:// when tls is set (got ${describeValue(c.url)})`,
        input: c.url,
      });
    }
  });

/** The client id a sink connects with: its own, or `edgeferry-<node id>`. */
export function sinkClientId(clientId: string | undefined, nodeId: string): string {
  return clientId ?? `edgeferry-${nodeId}`;
}
