// The acl_file format and semantics, as mosquitto.conf(5) documents them.

import { describe, expect, it } from 'vitest';
import { AclParseError, ClientAcl, filterWithin, parseAcl } from '../../src/sources/mqtt-broker/acl.ts';

const FILE = `# comment
topic read public/#

user alice
topic readwrite alice/#
topic write shared/in
topic deny alice/secret
topic read spaced topic/x

user bob
topic bob/+/data

pattern write devices/%u/telemetry
pattern read devices/%c/commands/#
`;

describe('acl file', () => {
  const acl = parseAcl(FILE);

  it('gives anonymous clients only the topic lines before the first user line, plus patterns', () => {
    const anon = new ClientAcl(acl, undefined, 'dev-1');
    expect(anon.mayReceive('public/a')).toBe(true);
    expect(anon.mayPublish('public/a')).toBe(false);
    expect(anon.mayPublish('alice/x')).toBe(false);
    // %u has no value for an anonymous client: that pattern grants nothing.
    expect(anon.mayPublish('devices/dev-1/telemetry')).toBe(false);
    expect(anon.mayReceive('devices/dev-1/commands/reboot')).toBe(true);
  });

  it('grants per user, read/write/readwrite, with deny checked first', () => {
    const alice = new ClientAcl(acl, 'alice', 'a-1');
    expect(alice.mayPublish('alice/temp')).toBe(true);
    expect(alice.mayReceive('alice/temp')).toBe(true);
    expect(alice.mayPublish('shared/in')).toBe(true);
    expect(alice.mayReceive('shared/in')).toBe(false);
    expect(alice.mayPublish('alice/secret')).toBe(false);
    expect(alice.mayReceive('alice/secret')).toBe(false);
    expect(alice.mayReceive('spaced topic/x')).toBe(true);
    expect(alice.mayPublish('bob/1/data')).toBe(false);
    // The anonymous section is not a user's.
    expect(alice.mayReceive('public/a')).toBe(false);
    const bob = new ClientAcl(acl, 'bob', 'b-1');
    expect(bob.mayPublish('bob/1/data')).toBe(true);
    expect(bob.mayPublish('bob/1/2/data')).toBe(false);
  });

  it('substitutes %u and %c, and refuses them when they hold a wildcard', () => {
    const alice = new ClientAcl(acl, 'alice', 'a-1');
    expect(alice.mayPublish('devices/alice/telemetry')).toBe(true);
    expect(alice.mayPublish('devices/bob/telemetry')).toBe(false);
    expect(alice.mayReceive('devices/a-1/commands/x')).toBe(true);
    expect(alice.mayReceive('devices/a-2/commands/x')).toBe(false);
    const sneaky = new ClientAcl(acl, 'al+', '#');
    expect(sneaky.mayPublish('devices/al+/telemetry')).toBe(false);
    expect(sneaky.maySubscribe('devices/#')).toBe(false);
  });

  it('grants a subscription only inside a read line, and not inside a deny line', () => {
    const alice = new ClientAcl(acl, 'alice', 'a-1');
    expect(alice.maySubscribe('alice/#')).toBe(true);
    expect(alice.maySubscribe('alice/+/x')).toBe(true);
    expect(alice.maySubscribe('alice/secret')).toBe(false);
    expect(alice.maySubscribe('#')).toBe(false);
    expect(alice.maySubscribe('shared/in')).toBe(false);
    const anon = new ClientAcl(acl, undefined, 'dev-1');
    expect(anon.maySubscribe('public')).toBe(true); // "public/#" matches its parent level
    expect(anon.maySubscribe('devices/dev-1/commands/#')).toBe(true);
    expect(anon.maySubscribe('devices/+/commands/#')).toBe(false);
  });

  it('decides whether a filter lies inside another', () => {
    expect(filterWithin('a/b', 'a/+')).toBe(true);
    expect(filterWithin('a/+', 'a/b')).toBe(false);
    expect(filterWithin('a/#', 'a/+')).toBe(false);
    expect(filterWithin('a/+/c', 'a/#')).toBe(true);
    expect(filterWithin('a', 'a/#')).toBe(true);
    expect(filterWithin('a/b/c', 'a/+')).toBe(false);
    expect(filterWithin('$SYS/x', '#')).toBe(false);
    expect(filterWithin('$SYS/x', '$SYS/#')).toBe(true);
  });

  it('an ACL with no line for a user grants that user nothing', () => {
    const carol = new ClientAcl(parseAcl('user alice\ntopic #\n'), 'carol', 'c');
    expect(carol.mayPublish('x')).toBe(false);
    expect(carol.maySubscribe('x')).toBe(false);
  });

  it('names the file and line of a bad entry', () => {
    expect(() => parseAcl('topic read a/#\ntopik b\n', 'acl.conf')).toThrow(AclParseError);
    expect(() => parseAcl('topic read a/#\ntopik b\n', 'acl.conf')).toThrow(
      /acl\.conf:2: unknown keyword "topik"/,
    );
    expect(() => parseAcl('topic read a/#/b\n', 'acl.conf')).toThrow(
      /acl\.conf:1: '#' must be a whole level/,
    );
    expect(() => parseAcl('user\n', 'acl.conf')).toThrow(/acl\.conf:1:/);
  });
});
