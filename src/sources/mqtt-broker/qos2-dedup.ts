import type { AckGate } from './ack-gate.ts';
import type { IncomingObserver } from './bounded-persistence.ts';

/**
 * A QoS 2 PUBLISH that was journaled and whose exchange is not over: until its PUBREL arrives,
 * a PUBLISH with the same packet id from the same session is a resend of it [MQTT-4.3.3-2]
 * (the sender sets DUP [MQTT-3.3.1-1], after a reconnect too [MQTT-4.4.0-1]).
 */
export class Qos2Pending {
  readonly clientId: string;
  readonly messageId: number;
  /** The connection that appended the record; its ack waits in this gate. */
  readonly gate: AckGate;
  committed = false;
  /** Other connections' gates holding a resend's PUBREC until this record is committed. */
  waiters: AckGate[] | null = null;

  constructor(clientId: string, messageId: number, gate: AckGate) {
    this.clientId = clientId;
    this.messageId = messageId;
    this.gate = gate;
  }
}

export interface Qos2Limits {
  /** Per session: QoS 2 messages awaiting PUBREL (also aedes' maxInflightInbound). */
  maxAwaitingRel: number;
  /** All sessions together. */
  maxAwaitingRelTotal: number;
}

/**
 * Which QoS 2 messages each session has in flight, so a resend is not journaled again: aedes 1.x
 * runs authorizePublish, where records are appended, before its own duplicate check, and two
 * appends would reach upstream as two records with different ids.
 *
 * An entry is added when the record is appended and removed at the PUBREL (seen through the
 * persistence, whether or not aedes had stored the packet), when the session's incoming state
 * is cleared (a clean session starts or ends), or when the journal refuses the record (then the
 * resend must be journaled). Bounded per session and in total, oldest out first: a forgotten
 * entry can only make a later resend journaled twice, never lose one.
 */
export class Qos2Dedup implements IncomingObserver {
  private readonly limits: Qos2Limits;
  private readonly sessions = new Map<string, Map<number, Qos2Pending>>();
  /** Every entry, oldest first (a Set keeps insertion order). */
  private readonly all = new Set<Qos2Pending>();

  constructor(limits: Qos2Limits) {
    this.limits = limits;
  }

  get size(): number {
    return this.all.size;
  }

  /** The pending exchange a PUBLISH with this id resends, if any. */
  find(clientId: string, messageId: number): Qos2Pending | undefined {
    return this.sessions.get(clientId)?.get(messageId);
  }

  track(clientId: string, messageId: number, gate: AckGate): Qos2Pending {
    const previous = this.find(clientId, messageId);
    if (previous !== undefined) this.forget(previous);
    let session = this.sessions.get(clientId);
    if (session === undefined) {
      session = new Map();
      this.sessions.set(clientId, session);
    }
    const entry = new Qos2Pending(clientId, messageId, gate);
    session.set(messageId, entry);
    this.all.add(entry);
    if (session.size > this.limits.maxAwaitingRel) {
      this.forget(session.values().next().value as Qos2Pending);
    }
    if (this.all.size > this.limits.maxAwaitingRelTotal) {
      this.forget(this.all.values().next().value as Qos2Pending);
    }
    return entry;
  }

  /** Removes `entry` if it is still the one tracked for its id. */
  forget(entry: Qos2Pending): void {
    if (!this.all.delete(entry)) return;
    const session = this.sessions.get(entry.clientId);
    if (session === undefined) return;
    if (session.get(entry.messageId) === entry) session.delete(entry.messageId);
    if (session.size === 0) this.sessions.delete(entry.clientId);
  }

  pubrel(clientId: string, messageId: number): void {
    const entry = this.find(clientId, messageId);
    if (entry !== undefined) this.forget(entry);
  }

  sessionCleared(clientId: string): void {
    const session = this.sessions.get(clientId);
    if (session === undefined) return;
    for (const entry of session.values()) this.all.delete(entry);
    this.sessions.delete(clientId);
  }
}
