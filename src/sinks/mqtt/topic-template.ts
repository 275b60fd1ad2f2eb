// The bridge sink's topic template: `edge/{node}/{topic}` and the like. Parsed once at config
// time (unknown placeholders refused there); rendered per record from the fields of the stored
// body, decoding only the fields the template names.

import type { RecordFieldSpans } from '../../core/record.ts';

export const TOPIC_PLACEHOLDERS = ['node', 'topic', 'source', 'device'] as const;
type Placeholder = (typeof TOPIC_PLACEHOLDERS)[number];

/** A literal piece, or a record field to put in its place. */
type Part = { literal: string } | { field: Exclude<Placeholder, 'node'> };

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** [MQTT-4.7.3-3] a topic name is at most 65535 bytes of UTF-8. */
export const MAX_TOPIC_BYTES = 65535;

/** Why a literal piece of a template (or a rendered topic) is not a valid topic name, or null. */
export function topicNameProblem(s: string): string | null {
  // [MQTT-4.7.1-1] wildcards are for filters only; [MQTT-4.7.3-1] at least one character;
  // [MQTT-4.7.3-2] no U+0000.
  if (s.length === 0) return 'is empty';
  if (s.includes('+') || s.includes('#')) return 'contains a wildcard (+ or #)';
  if (s.includes('\0')) return 'contains U+0000';
  if (s.length * 3 > MAX_TOPIC_BYTES && Buffer.byteLength(s) > MAX_TOPIC_BYTES) {
    return `is longer than ${MAX_TOPIC_BYTES} bytes`;
  }
  return null;
}

/** The problem with a template as configured, or null. */
export function templateProblem(template: string): string | null {
  if (template.length === 0) return 'must not be empty';
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!(TOPIC_PLACEHOLDERS as readonly string[]).includes(m[1])) {
      return `unknown placeholder {${m[1]}} (known: ${TOPIC_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')})`;
    }
  }
  const literal = template.replace(PLACEHOLDER, '');
  if (literal.includes('{') || literal.includes('}')) return 'has an unmatched { or }';
  if (literal.includes('+') || literal.includes('#')) return 'contains a wildcard (+ or #)';
  if (literal.includes('\0')) return 'contains U+0000';
  return null;
}

/**
 * The literal start of every topic the template renders (`edge/n1/` for `edge/{node}/{topic}`
 * on node n1), or null when a record field comes first and no prefix is common to all. The MQTT
 * client source drops what arrives under it when the broker is MQTT 3.1.1 (no user properties to
 * recognise the bridge's own publishes by): README, loop prevention.
 */
export function templatePrefix(template: string, node: string): string | null {
  let prefix = '';
  let last = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    prefix += template.slice(last, m.index);
    if (m[1] !== 'node') return prefix === '' ? null : prefix;
    prefix += node;
    last = m.index + m[0].length;
  }
  prefix += template.slice(last);
  return prefix === '' ? null : prefix;
}

export class TopicTemplate {
  private readonly parts: Part[] = [];
  /** The whole template when it names no record field (every record goes to one topic). */
  private readonly constant: string | null;

  /** `template` must have passed `templateProblem`; `{node}` is filled in here, once. */
  constructor(template: string, node: string) {
    let last = 0;
    let literal = '';
    for (const m of template.matchAll(PLACEHOLDER)) {
      literal += template.slice(last, m.index);
      last = m.index + m[0].length;
      if (m[1] === 'node') literal += node;
      else {
        if (literal) this.parts.push({ literal });
        literal = '';
        this.parts.push({ field: m[1] as Exclude<Placeholder, 'node'> });
      }
    }
    literal += template.slice(last);
    if (literal) this.parts.push({ literal });
    this.constant = this.parts.every((p) => 'literal' in p) ? literal : null;
  }

  /** The topic for a record whose body `spans` has just scanned. */
  render(body: Buffer, spans: RecordFieldSpans): string {
    if (this.constant !== null) return this.constant;
    let out = '';
    for (const p of this.parts) {
      if ('literal' in p) out += p.literal;
      else if (p.field === 'topic') out += body.toString('utf8', spans.topicStart, spans.topicEnd);
      else if (p.field === 'device') out += body.toString('utf8', spans.deviceStart, spans.deviceEnd);
      else out += body.toString('utf8', spans.sourceStart, spans.sourceEnd);
    }
    return out;
  }
}
