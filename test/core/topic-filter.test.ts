import { describe, expect, it } from 'vitest';
import { encodeRecord, type RecordInput, recordPrefix, topicFirstByte } from '../../src/core/record.ts';
import { TopicRouter, topicMatches } from '../../src/core/topic-filter.ts';

const rec = (topic: string, extra: Partial<RecordInput> = {}): Buffer =>
  encodeRecord({
    ts: 1_717_171_717_171,
    source: 'mqtt',
    device: 'dev',
    topic,
    payload: Buffer.from('p'),
    ...extra,
  });

describe('topicFirstByte', () => {
  it('finds the topic behind fields of any length, and says -1 for an empty, absent or cut-off topic', () => {
    expect(topicFirstByte(rec('$SYS/x'))).toBe(0x24);
    expect(topicFirstByte(rec('a/b'))).toBe(0x61);
    // Long source and device: multi-byte length varints before the topic.
    expect(topicFirstByte(rec('$x', { source: 's'.repeat(300), device: 'd'.repeat(20_000) }))).toBe(0x24);
    expect(topicFirstByte(rec(''))).toBe(-1);
    expect(topicFirstByte(Buffer.alloc(0))).toBe(-1);
    const body = rec('$SYS/x');
    expect(topicFirstByte(body.subarray(0, body.indexOf('$SYS')))).toBe(-1);
    // A full Record (seq and id in front) reads the same.
    expect(topicFirstByte(Buffer.concat([recordPrefix('ep', 42), body]))).toBe(0x24);
  });
});

describe('TopicRouter.matchesRecord', () => {
  it('under # a $ topic does not match [MQTT-4.7.2-1]; $SYS/# and +/x rules hold as in topicMatches', () => {
    const all = new TopicRouter(['#']);
    expect(all.matchesRecord(rec('sensors/t'))).toBe(true);
    expect(all.matchesRecord(rec(''))).toBe(true);
    expect(all.matchesRecord(rec('$SYS/x'))).toBe(false);
    expect(new TopicRouter(['#', '$SYS/#']).matchesRecord(rec('$SYS/x'))).toBe(true);
    expect(new TopicRouter(['$SYS/#']).matchesRecord(rec('$SYS/x'))).toBe(true);
    expect(new TopicRouter(['$SYS/#']).matchesRecord(rec('sensors/t'))).toBe(false);
    expect(new TopicRouter(['+/x']).matchesRecord(rec('$SYS/x'))).toBe(false);
    expect(new TopicRouter(['+/x']).matchesRecord(rec('a/x'))).toBe(true);
    for (const [f, t] of [
      ['#', '$SYS/x'],
      ['+/x', '$SYS/x'],
      ['$SYS/+', '$SYS/x'],
      ['a/#', 'a'],
    ]) {
      expect(new TopicRouter([f]).matchesRecord(rec(t)), `${f} ${t}`).toBe(topicMatches(f, t));
    }
  });
});
