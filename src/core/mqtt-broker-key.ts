// Which broker an MQTT url points at, as one comparable string. The client source stamps it on
// every record (attribute `broker`) and the bridge sink compares it with its own url, so a record
// that came from a broker is never published back to that same broker (README: loop rule).

/** `<host>:<port>` of an mqtt:// or mqtts:// url: host lowercased, port defaulted (1883 / 8883). */
export function brokerKey(url: string): string {
  const u = new URL(url);
  const port = u.port !== '' ? u.port : u.protocol === 'mqtts:' ? '8883' : '1883';
  return `${u.hostname.toLowerCase()}:${port}`;
}
