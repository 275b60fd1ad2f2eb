// The acknowledgements one connection owes its broker, held until each message is committed.
//
// mqtt.js handles incoming packets one at a time and sends a PUBACK only when `handleMessage`
// calls back, so acking after the commit that way admits one message per group commit. Instead
// the source lets mqtt.js go on at once, swallows the PUBACK/PUBREC it sends, and this window
// sends its own when the commit is reported: many messages are committed together while none is
// acknowledged before its own commit. Acks leave in the order the PUBLISH packets arrived
// ([MQTT-4.6.0-2], [MQTT-4.6.0-3]) because only the committed prefix of the window is released.
// When the connection closes, what is held is dropped: the broker redelivers those messages to
// the persistent session after the reconnect ([MQTT-4.4.0-1]), and the copies journaled again
// are the at-least-once duplicates.

export type AckCmd = 'puback' | 'pubrec';

/** One received QoS 1/2 message: the state object its append callback gets. */
export interface HeldAck {
  window: AckWindow;
  messageId: number;
  cmd: AckCmd;
  committed: boolean;
}

export type AckWriter = (cmd: AckCmd, messageId: number) => void;

export class AckWindow {
  private entries: HeldAck[] = [];
  private head = 0;
  private open = true;
  private readonly write: AckWriter;
  private readonly cork: () => void;
  private readonly uncork: () => void;
  /** Called when the window shrinks, so a reader paused on a full window can resume. */
  onRelease: (() => void) | null = null;

  constructor(write: AckWriter, cork: () => void, uncork: () => void) {
    this.write = write;
    this.cork = cork;
    this.uncork = uncork;
  }

  /** Acks held (received, not yet sent). */
  get held(): number {
    return this.entries.length - this.head;
  }

  get isOpen(): boolean {
    return this.open;
  }

  hold(messageId: number, cmd: AckCmd, committed: boolean): HeldAck {
    const entry: HeldAck = { window: this, messageId, cmd, committed };
    this.entries.push(entry);
    if (committed) this.release();
    return entry;
  }

  /** The entry's record is committed: send every ack at the front that may now go. */
  commit(entry: HeldAck): void {
    entry.committed = true;
    if (this.open && this.entries[this.head] === entry) this.release();
  }

  /** The connection is gone: nothing held will be sent (the broker redelivers those messages). */
  close(): void {
    this.open = false;
    this.entries = [];
    this.head = 0;
  }

  private release(): void {
    const entries = this.entries;
    let i = this.head;
    if (i >= entries.length || !entries[i].committed) return;
    // Acks released by one commit go out in one socket write.
    this.cork();
    while (i < entries.length && entries[i].committed) {
      this.write(entries[i].cmd, entries[i].messageId);
      i++;
    }
    this.uncork();
    if (i === entries.length) {
      this.entries = [];
      this.head = 0;
    } else if (i > 1024 && i * 2 > entries.length) {
      this.entries = entries.slice(i);
      this.head = 0;
    } else this.head = i;
    this.onRelease?.();
  }
}
