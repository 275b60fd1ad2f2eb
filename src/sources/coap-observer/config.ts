// `coap.devices`: the southbound CoAP devices the observer follows and Gateway.Command addresses
// (README: CoAP devices).

import * as z from 'zod';
import {
  componentName,
  describeValue,
  nonEmpty,
  section,
  timerMs,
  uniqueNames,
} from '../../config/fields.ts';

const coapUrl = z.string().refine(
  (s) => {
    if (!URL.canParse(s)) return false;
    const u = new URL(s);
    return (u.protocol === 'coap:' || u.protocol === 'coaps:') && u.hostname !== '';
  },
  { error: (iss) => `must be a coap:// or coaps:// URL of the device (got ${describeValue(iss.input)})` },
);

/** A device resource the gateway follows: observed (RFC 7641), or polled where observe is off. */
const coapResource = z
  .strictObject({
    path: z.string().regex(/^\/[^?#\s]*$/, {
      error: (iss) => `must be an absolute path such as /temp (got ${describeValue(iss.input)})`,
    }),
    topic: nonEmpty(),
    observe: z.boolean().default(true),
    // Poll with GET at this interval; required when observe is false.
    pollIntervalMs: timerMs(100).optional(),
  })
  .refine((r) => r.observe || r.pollIntervalMs !== undefined, {
    path: ['pollIntervalMs'],
    error: 'required when observe is false',
  });

/** A southbound CoAP device: observed resources, and the target of Gateway.Command. */
const coapDevice = z
  .strictObject({
    name: componentName(),
    url: coapUrl,
    // DTLS pre-shared key, for coaps:// devices.
    psk: z.strictObject({ identity: nonEmpty(), key: nonEmpty() }).optional(),
    timeoutMs: timerMs(1).prefault('5s'),
    retry: section({
      minMs: timerMs().prefault('1s'),
      maxMs: timerMs(1).prefault('60s'),
    }),
    resources: z.array(coapResource).default(() => []),
  })
  .refine((d) => !d.url.startsWith('coaps:') || d.psk !== undefined, {
    path: ['psk'],
    error: 'required for a coaps:// device (DTLS with a pre-shared key)',
  });

/** `coap.devices`: names unique, they address Gateway.Command. */
export const coapDevicesConfig = uniqueNames(coapDevice, 'device', 'devices').default(() => []);
