// CoAP Content-Format numbers (RFC 7252 §12.3, the IANA "CoAP Content-Formats" registry) to the
// media type a record carries, so a sink sees `application/json` whether the device spoke MQTT 5
// or CoAP. An unregistered number is kept as its decimal string.

const REGISTERED: Record<number, string> = {
  0: 'text/plain;charset=utf-8',
  40: 'application/link-format',
  41: 'application/xml',
  42: 'application/octet-stream',
  47: 'application/exi',
  50: 'application/json',
  51: 'application/json-patch+json',
  52: 'application/merge-patch+json',
  60: 'application/cbor',
  61: 'application/cwt',
  62: 'application/multipart-core',
  63: 'application/cbor-seq',
  110: 'application/senml+json',
  111: 'application/sensml+json',
  112: 'application/senml+cbor',
  113: 'application/sensml+cbor',
  114: 'application/senml-exi',
  115: 'application/sensml-exi',
  310: 'application/senml+xml',
  311: 'application/sensml+xml',
  432: 'application/td+json',
};

/** Built once: every Content-Format (0-65535) maps to the same string instance per message. */
const NAMES = new Map<number, string>(Object.entries(REGISTERED).map(([k, v]) => [Number(k), v]));

/** The record's contentType for a Content-Format option value; undefined when there was none. */
export function contentTypeOf(format: number): string | undefined {
  if (format < 0) return undefined;
  const known = NAMES.get(format);
  if (known !== undefined) return known;
  return String(format);
}

/** The formats `/.well-known/core` advertises for the telemetry resource (any is accepted). */
export const ADVERTISED_FORMATS = [0, 42, 50, 60, 110, 112];
