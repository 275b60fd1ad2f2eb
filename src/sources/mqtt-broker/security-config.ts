// The embedded broker's device security fields (README: Securing device access): the TLS
// listener, the credentials and ACL files, and how often those files are checked for a change.

import * as z from 'zod';
import { describeValue, filePath, nonEmpty, port, timerMs } from '../../config/fields.ts';

/** `mqtt.port`: a port, or `false` for no plain TCP listener (TLS only). */
export const plainPort = () =>
  z
    .custom<number | false>(
      (v) => v === false || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 65535),
      { error: (iss) => `must be a port in 0..65535 or false (got ${describeValue(iss.input)})` },
    )
    .default(1883);

export const mqttSecurityShape = {
  tls: z
    .strictObject({
      host: nonEmpty().optional(),
      port: port().default(8883),
      certFile: filePath(),
      keyFile: filePath(),
      // Client certificates signed by this CA are verified; with requireClientCert, required.
      caFile: filePath().optional(),
      requireClientCert: z.boolean().default(false),
      // What of a verified client certificate becomes the device's user name (ACL `user`, `%u`).
      identity: z.enum(['cn', 'san-dns', 'san-uri']).default('cn'),
    })
    .refine((t) => !t.requireClientCert || t.caFile !== undefined, {
      path: ['caFile'],
      error: 'required with requireClientCert: true (the CA that signs the device certificates)',
    })
    .optional(),
  passwordFile: filePath().optional(),
  aclFile: filePath().optional(),
  // cert-manager and SPIRE rewrite files in place: checked this often, a change applied live.
  reloadCheckMs: timerMs(10).prefault('10s'),
};
