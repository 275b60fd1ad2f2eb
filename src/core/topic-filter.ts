import { readTopic, topicFirstByte } from './record.ts';

// MQTT topic filter matching ([MQTT-4.7]): `+` matches one level, `#` (last) matches the rest,
// including the parent level itself ("sport/#" matches "sport"). Topics starting with `$` are not
// matched by filters starting with a wildcard [MQTT-4.7.2-1].

export function validateTopicFilter(filter: string): string | null {
  if (filter.length === 0) return 'a topic filter must not be empty';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return `'#' must be a whole level and the last one: ${filter}`;
    }
    if (level.includes('+') && level !== '+') return `'+' must be a whole level: ${filter}`;
  }
  return null;
}

export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

const CACHE_LIMIT = 10_000;
const DOLLAR = 0x24;

/**
 * A set of filters with a bounded per-topic cache: device fleets publish to a limited set of
 * topics, so the common case is a single Map lookup per record.
 */
export class TopicRouter {
  readonly filters: readonly string[];
  /**
   * The filters include `#`: every topic matches except those starting with `$`
   * [MQTT-4.7.2-1]. Not a licence to skip matching: use `matchesRecord`, which keeps that rule.
   */
  readonly matchesAll: boolean;
  private readonly cache = new Map<string, boolean>();

  constructor(filters: readonly string[]) {
    this.filters = filters;
    this.matchesAll = filters.includes('#');
  }

  /**
   * Whether a stored record body's topic matches: the one rule for every reader of the journal
   * (sinks, gRPC Subscribe). Under `#` only the topic's first byte is looked at, so the common
   * route decodes no topic; a `$` topic goes through the filters like any other.
   */
  matchesRecord(body: Buffer): boolean {
    if (this.matchesAll && topicFirstByte(body) !== DOLLAR) return true;
    return this.matches(readTopic(body));
  }

  matches(topic: string): boolean {
    if (this.matchesAll && !topic.startsWith('$')) return true;
    let hit = this.cache.get(topic);
    if (hit === undefined) {
      hit = false;
      for (const f of this.filters) {
        if (topicMatches(f, topic)) {
          hit = true;
          break;
        }
      }
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(topic, hit);
    }
    return hit;
  }
}
