// CoAP Content-Format numbers (RFC 7252 §12.3, the IANA "CoAP Content-Formats" registry) and the
// media type names records carry, both ways: a sink sees `application/json` whether the device
// spoke MQTT 5 or CoAP, and a command's content type becomes the option a device understands.
// Shared by the CoAP server and the CoAP observer.

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

/** Built once: each format maps to the same string instance for every message. */
const NAMES = new Map<number, string>(Object.entries(REGISTERED).map(([k, v]) => [Number(k), v]));
const NUMBERS = new Map<string, number>([...NAMES].map(([n, name]) => [name, n]));
NUMBERS.set('text/plain', 0);

/** The media type of a Content-Format; an unregistered number as its decimal string. */
export function contentFormatName(format: number): string {
  return NAMES.get(format) ?? String(format);
}

/**
 * The Content-Format for a content type: a registered name, or a number; undefined for ""
 * (no option); null when not understood.
 */
export function contentFormatNumber(contentType: string): number | undefined | null {
  const t = contentType
    .trim()
    .toLowerCase()
    .replace(/\s*;\s*/g, ';');
  if (t === '') return undefined;
  if (/^\d{1,5}$/.test(t)) {
    const n = Number(t);
    return n <= 0xffff ? n : null;
  }
  return NUMBERS.get(t) ?? null;
}
