// Content-Format numbers (RFC 7252 §12.3 registry) <-> the media type names records carry.

const NAMES = new Map<number, string>([
  [0, 'text/plain;charset=utf-8'],
  [40, 'application/link-format'],
  [41, 'application/xml'],
  [42, 'application/octet-stream'],
  [50, 'application/json'],
  [60, 'application/cbor'],
]);

const NUMBERS = new Map<string, number>([...NAMES].map(([n, name]) => [name, n]));
NUMBERS.set('text/plain', 0);

/** The record's contentType for a Content-Format; the number as a string when unregistered here. */
export function mediaTypeOf(format: number | undefined): string {
  if (format === undefined) return '';
  return NAMES.get(format) ?? String(format);
}

/**
 * The Content-Format number for a command's content type: a name above, or a number; undefined
 * for "" (no option sent); null when not understood.
 */
export function formatOf(contentType: string): number | undefined | null {
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
