// The MQTT client source's `mqttClient:` section (README: My site already has a broker). Off
// while `url` is unset; `clientId` is then required, because the persistent session that keeps
// unacknowledged messages for us across a crash is keyed by it.

import * as z from 'zod';
import {
  bytes,
  componentName,
  describeValue,
  filePath,
  integer,
  nonEmpty,
  retry,
  section,
  timerMs,
} from '../../config/fields.ts';
import { validateTopicFilter } from '../../core/topic-filter.ts';

const SHARE = /^\$share\/([^/]*)\/(.*)$/s;

const mqttUrl = z.string().refine(
  (s) => {
    if (!URL.canParse(s)) return false;
    const u = new URL(s);
    return (u.protocol === 'mqtt:' || u.protocol === 'mqtts:') && u.hostname !== '';
  },
  { error: (iss) => `must be an mqtt:// or mqtts:// URL with a host (got ${describeValue(iss.input)})` },
);

/** A subscription filter; `$share/<group>/<filter>` is checked here, its MQTT 5 need by the section. */
const subscriptionFilter = z.string().superRefine((s, ctx) => {
  const share = SHARE.exec(s);
  if (s.startsWith('$share/') && (!share || share[1] === '' || /[+#]/.test(share[1]))) {
    ctx.addIssue({
      code: 'custom',
      message: `a shared subscription is $share/<group>/<filter>, the group without + or # (got ${describeValue(s)})`,
      input: s,
    });
    return;
  }
  const problem = validateTopicFilter(share ? share[2] : s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, input: s });
});

export const mqttClientConfig = section({
  // Records carry it as `device`; also the `protocol` label is `mqtt-client`.
  name: componentName().default('site-broker'),
  url: mqttUrl.optional(),
  clientId: nonEmpty().max(65535).optional(),
  username: z.string().optional(),
  // A password in the file is visible to whoever reads the ConfigMap: passwordFile (a mounted
  // Secret) is the norm; password is for a lab.
  password: z.string().optional(),
  passwordFile: filePath().optional(),
  tls: z
    .strictObject({
      caFile: filePath().optional(),
      certFile: filePath().optional(),
      keyFile: filePath().optional(),
      rejectUnauthorized: z.boolean().default(true),
    })
    .optional(),
  protocolVersion: z
    .union([z.literal(4), z.literal(5)], {
      error: (iss) => `must be 4 (MQTT 3.1.1) or 5 (got ${describeValue(iss.input)})`,
    })
    .default(4),
  topics: z.array(subscriptionFilter).default(() => []),
  qos: z
    .union([z.literal(0), z.literal(1), z.literal(2)], {
      error: (iss) => `must be 0, 1 or 2 (got ${describeValue(iss.input)})`,
    })
    .default(1),
  keepaliveSeconds: integer(1, 65535).default(30),
  connectTimeoutMs: timerMs(100).prefault('10s'),
  // Messages received and not yet acknowledged (waiting for their commit). MQTT 5 sends it as
  // our Receive Maximum [MQTT-3.3.4-7]; on 3.1.1 only the broker's own limit holds the broker back
  // (mosquitto: max_inflight_messages, default 20) and this one stops reading past it.
  maxInFlight: integer(1, 65535).default(1000),
  // The largest PUBLISH journaled, as `mqtt.maxPacketBytes` for devices. MQTT 5 tells the broker
  // (Maximum Packet Size: it then never sends a larger one); on 3.1.1 a larger message is
  // acknowledged and dropped, counted and logged: refusing it instead would have the broker
  // redeliver it for ever and stop the session's queue behind it.
  maxPacketBytes: bytes(64).prefault('256KiB'),
  retry,
}).superRefine((c, ctx) => {
  const issue = (path: (string | number)[], message: string, input: unknown) =>
    ctx.addIssue({ code: 'custom', path, message, input });
  if (c.url === undefined) return;
  if (c.clientId === undefined)
    issue(['clientId'], 'required when url is set (the persistent session is kept under it)', undefined);
  if (c.topics.length === 0) issue(['topics'], 'must name at least one topic filter', c.topics);
  if (c.password !== undefined && c.passwordFile !== undefined)
    issue(['passwordFile'], 'set password or passwordFile, not both', c.passwordFile);
  if ((c.password !== undefined || c.passwordFile !== undefined) && c.username === undefined)
    issue(['username'], 'required with a password', undefined);
  if (c.tls && !c.url.startsWith('mqtts:'))
    issue(['tls'], `needs an mqtts:// url (got ${describeValue(c.url)})`, c.tls);
  if (c.tls && (c.tls.certFile === undefined) !== (c.tls.keyFile === undefined))
    issue(
      ['tls', c.tls.certFile === undefined ? 'certFile' : 'keyFile'],
      'certFile and keyFile go together',
      c.tls,
    );
  c.topics.forEach((t, i) => {
    if (c.protocolVersion !== 5 && t.startsWith('$share/'))
      issue(['topics', i], `shared subscriptions need protocolVersion: 5 (got ${describeValue(t)})`, t);
  });
});

export type MqttClientConfig = z.output<typeof mqttClientConfig>;
