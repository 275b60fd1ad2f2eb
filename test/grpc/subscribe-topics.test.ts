// Subscribe's topic filtering against records placed in a real journal: `$` topics are not
// matched by filters that start with a wildcard [MQTT-4.7.2-1], `#` included.

import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/daemon.ts';
import { type InProcessGateway, inProcessGateway, subscribe } from './in-process.ts';

let gw: InProcessGateway | null = null;
afterEach(async () => {
  await gw?.close();
  gw = null;
});

describe('Subscribe and $ topics', () => {
  it('a $SYS/x record does not reach a # subscriber, but reaches $SYS/# and $SYS/x subscribers', async () => {
    gw = await inProcessGateway();
    for (const t of ['a/1', '$SYS/x', 'a/2', '$share/b', '$SYS/y/z']) await gw.append(t);
    const all = subscribe(gw.client, { start: 'START_EARLIEST', filters: ['#'] });
    const empty = subscribe(gw.client, { start: 'START_EARLIEST' });
    const plus = subscribe(gw.client, { start: 'START_EARLIEST', filters: ['+/1', '+/x'] });
    const sys = subscribe(gw.client, { start: 'START_EARLIEST', filters: ['$SYS/#'] });
    const exact = subscribe(gw.client, { start: 'START_EARLIEST', filters: ['$SYS/x', 'a/#'] });
    // The last record, matched by every stream but `sys`, closes the window for them after
    // `$SYS/end` (which closes the one of `sys`).
    await gw.append('$SYS/end');
    await gw.append('a/end');
    const topics = (s: typeof all) => s.records().map((r) => r.topic);
    await eventually(() => topics(all).includes('a/end'), '# reached a/end');
    await eventually(() => topics(empty).includes('a/end'), 'no filters reached a/end');
    await eventually(() => topics(plus).includes('a/1'), '+/1 reached a/1');
    await eventually(() => topics(sys).includes('$SYS/end'), '$SYS/# reached $SYS/end');
    await eventually(() => topics(exact).includes('a/end'), '$SYS/x, a/# reached a/end');
    expect(topics(all)).toEqual(['a/1', 'a/2', 'a/end']);
    expect(topics(empty)).toEqual(['a/1', 'a/2', 'a/end']);
    expect(topics(plus)).toEqual(['a/1']);
    expect(topics(sys)).toEqual(['$SYS/x', '$SYS/y/z', '$SYS/end']);
    expect(topics(exact)).toEqual(['a/1', '$SYS/x', 'a/2', 'a/end']);
  });
});
