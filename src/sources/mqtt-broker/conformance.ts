// MQTT 3.1.1 rules that the embedded broker does not enforce, checked on the raw bytes of a
// packet before aedes parses it. mqtt-packet decodes every string with toString('utf8'), so an
// ill-formed topic reaches aedes (and the journal) with U+FFFD in it; aedes accepts packet
// identifier 0, an UNSUBSCRIBE or SUBSCRIBE without filters, a password without a user name and
// gives an empty client id with CleanSession 0 a random one. These checks see the bytes, so they
// live in the read guard rather than in authorizePublish, which only gets the decoded string.
// Rules mqtt-packet or aedes already enforce are checked here too where it costs a table lookup
// (fixed header flags, QoS 3, first and second CONNECT, wildcards in a topic name): the
// connection is closed either way, this only names the rule in the count and the log line.

import { isUtf8 } from 'node:buffer';

export interface Violation {
  /** The normative statement broken, as the specification numbers it: `MQTT-1.5.3-1`. */
  rule: string;
  reason: string;
  /** A CONNACK return code to send before closing (only [MQTT-3.1.3-8]: 0x02). */
  connack?: number;
}

const CONNECT = 1;
const PUBLISH = 3;
const SUBSCRIBE = 8;
const UNSUBSCRIBE = 10;

/**
 * Fixed header flags a client may send per packet type [MQTT-2.2.2-1]; -1: any (PUBLISH), null:
 * a type a server never receives from a client (reserved 0 and 15, and the server's own
 * CONNACK, SUBACK, UNSUBACK, PINGRESP): a protocol violation [MQTT-4.8.0-1].
 */
const CLIENT_FLAGS: (number | null)[] = [
  null, // 0 reserved
  0, // CONNECT
  null, // CONNACK
  -1, // PUBLISH
  0, // PUBACK
  0, // PUBREC
  2, // PUBREL
  0, // PUBCOMP
  2, // SUBSCRIBE
  null, // SUBACK
  2, // UNSUBSCRIBE
  null, // UNSUBACK
  0, // PINGREQ
  null, // PINGRESP
  0, // DISCONNECT
  null, // 15 reserved
];

const v = (rule: string, reason: string, connack?: number): Violation => ({ rule, reason, connack });

/**
 * Checks a fixed header. `connected`: a CONNECT was already seen on this connection.
 * Returns the violation, or null.
 */
export function checkHeader(first: number, connected: boolean): Violation | null {
  const type = first >> 4;
  const allowed = CLIENT_FLAGS[type];
  if (allowed === null) return v('MQTT-4.8.0-1', `packet type ${type} is not sent by a client`);
  const flags = first & 0x0f;
  if (allowed >= 0 && flags !== allowed)
    return v('MQTT-2.2.2-2', `reserved flags ${flags} in packet type ${type}`);
  if (type === PUBLISH && (flags & 0x06) === 0x06) return v('MQTT-3.3.1-4', 'PUBLISH with QoS 3');
  if (type === CONNECT) return connected ? v('MQTT-3.1.0-2', 'a second CONNECT') : null;
  if (!connected) return v('MQTT-3.1.0-1', `first packet is type ${type}, not CONNECT`);
  return null;
}

// The body is passed as `buf` from offset `at`, not as a subarray: a Buffer view costs more than
// the whole check of a short ASCII topic, and these run for every PUBLISH.

/**
 * How many leading body bytes `checkBody` needs for this packet, knowing the first `have` of
 * them (call again with more until the answer stops growing); 0: none. A PUBLISH needs only its
 * topic and packet identifier, never its payload.
 */
export function bodyBytesNeeded(
  first: number,
  remaining: number,
  buf: Buffer,
  at: number,
  have: number,
): number {
  const type = first >> 4;
  if (type === PUBLISH) {
    if (have < 2) return Math.min(2, remaining);
    const qos = (first >> 1) & 3;
    return Math.min(remaining, 2 + buf.readUInt16BE(at) + (qos > 0 ? 2 : 0));
  }
  return type === CONNECT || type === SUBSCRIBE || type === UNSUBSCRIBE ? remaining : 0;
}

/** Checks `buf[at, at + n)`, the first `bodyBytesNeeded` bytes of a packet's body (all of it but for a PUBLISH). */
export function checkBody(
  first: number,
  remaining: number,
  buf: Buffer,
  at: number,
  n: number,
): Violation | null {
  switch (first >> 4) {
    case PUBLISH:
      return checkPublish(first, remaining, buf, at, n);
    case CONNECT:
      return checkConnect(buf.subarray(at, at + n));
    case SUBSCRIBE:
      return checkFilters(buf.subarray(at, at + n), true);
    case UNSUBSCRIBE:
      return checkFilters(buf.subarray(at, at + n), false);
    default:
      return null;
  }
}

const TOPIC_NUL = 'MQTT-4.7.3-2';
const TRUNCATED = v('MQTT-4.8.0-1', 'a length field runs past the end of the packet');

function checkPublish(
  first: number,
  remaining: number,
  buf: Buffer,
  at: number,
  n: number,
): Violation | null {
  const qos = (first >> 1) & 3;
  if (n < 2) return TRUNCATED;
  const len = buf.readUInt16BE(at);
  if (2 + len + (qos > 0 ? 2 : 0) > remaining) return TRUNCATED;
  const topic = at + 2;
  const bad = checkString(buf, topic, topic + len, 'PUBLISH topic', TOPIC_NUL);
  if (bad) return bad;
  if (len === 0) return v('MQTT-4.7.3-1', 'empty PUBLISH topic');
  if (wildcards(buf, topic, topic + len)) return v('MQTT-3.3.2-2', 'wildcard in a PUBLISH topic');
  if (qos > 0 && buf.readUInt16BE(topic + len) === 0)
    return v('MQTT-2.3.1-1', `QoS ${qos} PUBLISH with packet identifier 0`);
  return null;
}

function checkFilters(body: Buffer, subscribe: boolean): Violation | null {
  const what = subscribe ? 'SUBSCRIBE' : 'UNSUBSCRIBE';
  if (body.length < 2) return TRUNCATED;
  if (body.readUInt16BE(0) === 0) return v('MQTT-2.3.1-1', `${what} with packet identifier 0`);
  if (body.length === 2)
    return subscribe
      ? v('MQTT-3.8.3-3', 'SUBSCRIBE without a topic filter')
      : v('MQTT-3.10.3-2', 'UNSUBSCRIBE without a topic filter');
  let o = 2;
  while (o < body.length) {
    if (o + 2 > body.length) return TRUNCATED;
    const end = o + 2 + body.readUInt16BE(o);
    if (end > body.length) return TRUNCATED;
    const bad = checkString(body, o + 2, end, `${what} topic filter`, TOPIC_NUL);
    if (bad) return bad;
    o = end;
    if (subscribe) {
      if (o >= body.length) return TRUNCATED;
      // [MQTT-3.8.3-4]: the requested QoS byte's upper six bits are reserved, and QoS 3 is invalid.
      if (body[o] > 2) return v('MQTT-3.8.3-4', `requested QoS byte ${body[o]}`);
      o++;
    }
  }
  return null;
}

function checkConnect(body: Buffer): Violation | null {
  if (body.length < 2) return TRUNCATED;
  const nameEnd = 2 + body.readUInt16BE(0);
  if (nameEnd + 4 > body.length) return TRUNCATED;
  const name = body.toString('latin1', 2, nameEnd);
  const level = body[nameEnd];
  // Levels other than 3 and 4 get aedes' CONNACK 0x01 [MQTT-3.1.2-2]; MQTT 3.1 is named MQIsdp.
  if (level === 4 || level === 3) {
    if (name !== (level === 4 ? 'MQTT' : 'MQIsdp'))
      return v('MQTT-3.1.2-1', `protocol name ${JSON.stringify(name)} with level ${level}`);
  } else {
    return null;
  }
  const flags = body[nameEnd + 1];
  if (flags & 0x01) return v('MQTT-3.1.2-3', 'reserved CONNECT flag set');
  const will = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 3;
  if (!will && willQos !== 0) return v('MQTT-3.1.2-13', 'Will QoS without the Will flag');
  if (will && willQos === 3) return v('MQTT-3.1.2-14', 'Will QoS 3');
  if (!will && flags & 0x20) return v('MQTT-3.1.2-15', 'Will Retain without the Will flag');
  const username = (flags & 0x80) !== 0;
  if (!username && flags & 0x40) return v('MQTT-3.1.2-22', 'a password without a user name');

  let o = nameEnd + 4; // level, flags, keep alive
  const field = (): number => {
    if (o + 2 > body.length) return -1;
    const end = o + 2 + body.readUInt16BE(o);
    return end > body.length ? -1 : end;
  };
  let end = field();
  if (end < 0) return TRUNCATED;
  const idBad = checkString(body, o + 2, end, 'client identifier');
  if (idBad) return idBad;
  if (end === o + 2 && (flags & 0x02) === 0)
    return v('MQTT-3.1.3-8', 'empty client identifier with CleanSession 0', 0x02);
  o = end;
  if (will) {
    end = field();
    if (end < 0) return TRUNCATED;
    const topicBad = checkString(body, o + 2, end, 'Will topic', TOPIC_NUL);
    if (topicBad) return topicBad;
    if (end === o + 2) return v('MQTT-4.7.3-1', 'empty Will topic');
    if (wildcards(body, o + 2, end)) return v('MQTT-4.7.1-1', 'wildcard in the Will topic');
    o = end;
    end = field(); // the Will message: bytes, not text
    if (end < 0) return TRUNCATED;
    o = end;
  }
  if (username) {
    end = field();
    if (end < 0) return TRUNCATED;
    const userBad = checkString(body, o + 2, end, 'user name');
    if (userBad) return userBad;
  }
  return null;
}

/**
 * A UTF-8 encoded string field [MQTT-1.5.3]: well-formed (no overlong forms, no surrogates) and
 * without U+0000 (in a topic name or filter also [MQTT-4.7.3-2], the rule counted for those).
 * ASCII, the usual case, is settled in one pass without a native call.
 */
function checkString(
  buf: Buffer,
  from: number,
  to: number,
  what: string,
  nullRule = 'MQTT-1.5.3-2',
): Violation | null {
  let ascii = true;
  for (let i = from; i < to; i++) {
    const b = buf[i];
    if (b === 0) return v(nullRule, `U+0000 in the ${what}`);
    if (b > 0x7f) ascii = false;
  }
  if (!ascii && !isUtf8(buf.subarray(from, to))) return v('MQTT-1.5.3-1', `ill-formed UTF-8 in the ${what}`);
  return null;
}

function wildcards(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] === 0x23 || buf[i] === 0x2b) return true;
  return false;
}
