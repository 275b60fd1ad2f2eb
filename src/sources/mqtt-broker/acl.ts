// Topic ACLs in mosquitto's acl_file format (mosquitto.conf(5), "acl_file"), with its semantics:
//   # comment                      (only as the line's first character)
//   topic [read|write|readwrite|deny] <topic>     before any `user` line: anonymous clients
//   user <username>                 the `topic` lines after it are that user's
//   pattern [read|write|readwrite|deny] <topic>   every client, `%u` = username, `%c` = client id
// The access word is optional (readwrite), so a topic with a space needs it. `deny` lines are
// checked before the lines that grant. Once an ACL is configured, what no line grants is refused.

import { topicMatches, validateTopicFilter } from '../../core/topic-filter.ts';

export type Access = 'read' | 'write' | 'readwrite' | 'deny';
const ACCESS = new Set<string>(['read', 'write', 'readwrite', 'deny']);

interface Rule {
  access: Access;
  topic: string;
  /** `pattern` lines: `%u` / `%c` are substituted per client. */
  pattern: boolean;
}

export class AclParseError extends Error {}

export interface ParsedAcl {
  anonymous: Rule[];
  users: Map<string, Rule[]>;
  patterns: Rule[];
}

export function parseAcl(text: string, file = 'acl file'): ParsedAcl {
  const acl: ParsedAcl = { anonymous: [], users: new Map(), patterns: [] };
  let current = acl.anonymous;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\s+$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const where = `${file}:${i + 1}`;
    const m = /^\s*(\S+)\s+(.+)$/.exec(line);
    if (!m) throw new AclParseError(`${where}: expected "topic", "pattern" or "user" and a value`);
    const [, keyword, rest] = m;
    if (keyword === 'user') {
      const user = rest.trim();
      current = acl.users.get(user) ?? [];
      acl.users.set(user, current);
      continue;
    }
    if (keyword !== 'topic' && keyword !== 'pattern')
      throw new AclParseError(`${where}: unknown keyword "${keyword}" (topic, pattern or user)`);
    const sp = rest.indexOf(' ');
    const first = sp < 0 ? rest : rest.slice(0, sp);
    const hasAccess = ACCESS.has(first) && sp >= 0;
    const access = (hasAccess ? first : 'readwrite') as Access;
    const topic = hasAccess ? rest.slice(sp + 1).trim() : rest.trim();
    const problem = validateTopicFilter(topic);
    if (problem) throw new AclParseError(`${where}: ${problem}`);
    const rule = { access, topic, pattern: keyword === 'pattern' };
    if (rule.pattern) acl.patterns.push(rule);
    else current.push(rule);
  }
  return acl;
}

/** Every topic that `filter` matches is matched by `acl` (a subscription inside an ACL line). */
export function filterWithin(filter: string, acl: string): boolean {
  const f = filter.split('/');
  const a = acl.split('/');
  // [MQTT-4.7.2-1]: an ACL starting with a wildcard never grants a `$` topic.
  if ((a[0] === '+' || a[0] === '#') && f[0].startsWith('$')) return false;
  for (let i = 0; i < f.length; i++) {
    if (i >= a.length) return false;
    if (a[i] === '#') return true;
    if (f[i] === '#') return false;
    if (a[i] === '+') continue;
    if (f[i] === '+' || f[i] !== a[i]) return false;
  }
  return a.length === f.length || (a.length === f.length + 1 && a[f.length] === '#');
}

/** The rules that apply to one connected client, with `%u` / `%c` substituted once. */
export class ClientAcl {
  private readonly deny: string[] = [];
  private readonly read: string[] = [];
  private readonly write: string[] = [];
  /** Verdicts per topic: a device publishes to a handful of topics, so most checks are one lookup. */
  private readonly writeCache = new Map<string, boolean>();
  private readonly readCache = new Map<string, boolean>();

  constructor(acl: ParsedAcl, username: string | undefined, clientId: string) {
    const own = username === undefined ? acl.anonymous : (acl.users.get(username) ?? []);
    for (const r of own) this.add(r.access, r.topic);
    for (const r of acl.patterns) {
      const topic = substitute(r.topic, username, clientId);
      if (topic !== null) this.add(r.access, topic);
    }
  }

  private add(access: Access, topic: string): void {
    if (access === 'deny') this.deny.push(topic);
    if (access === 'read' || access === 'readwrite') this.read.push(topic);
    if (access === 'write' || access === 'readwrite') this.write.push(topic);
  }

  mayPublish(topic: string): boolean {
    return cached(this.writeCache, topic, this.deny, this.write);
  }

  /** Whether a message on `topic` may be delivered to this client. */
  mayReceive(topic: string): boolean {
    return cached(this.readCache, topic, this.deny, this.read);
  }

  /** A SUBSCRIBE filter is granted when it lies inside a read line and inside no deny line. */
  maySubscribe(filter: string): boolean {
    for (const d of this.deny) if (filterWithin(filter, d)) return false;
    for (const r of this.read) if (filterWithin(filter, r)) return true;
    return false;
  }
}

const CACHE_LIMIT = 1000;

function cached(cache: Map<string, boolean>, topic: string, deny: string[], grant: string[]): boolean {
  let v = cache.get(topic);
  if (v === undefined) {
    v = !deny.some((d) => topicMatches(d, topic)) && grant.some((g) => topicMatches(g, topic));
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(topic, v);
  }
  return v;
}

/**
 * `%u` / `%c` in a pattern. A client whose username or id is absent, or holds a wildcard
 * character, gets no rule from a pattern that names it: mosquitto refuses these too, as a
 * `+` or `#` would widen the rule beyond the client's own topics.
 */
function substitute(topic: string, username: string | undefined, clientId: string): string | null {
  if (topic.includes('%u')) {
    if (username === undefined || /[+#]/.test(username)) return null;
    topic = topic.replaceAll('%u', username);
  }
  if (topic.includes('%c')) {
    if (clientId === '' || /[+#]/.test(clientId)) return null;
    topic = topic.replaceAll('%c', clientId);
  }
  return topic;
}
