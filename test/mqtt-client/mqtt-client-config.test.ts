// The mqttClient section: off by default, defaults when on, and errors that name the field.

import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { bridgeLoop } from '../../src/config/mqtt-brokers.ts';
import { ConfigError } from '../../src/core/errors.ts';
import { brokerKey } from '../../src/core/mqtt-broker-key.ts';

const ON = { url: 'mqtt://broker.site:1883', clientId: 'edge-1', topics: ['plant/#'] };

function errorOf(mqttClient: unknown): string {
  try {
    parseConfig({ mqttClient }, {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe('mqttClient config', () => {
  it('is off unless a url is given', () => {
    expect(parseConfig({}, {}).mqttClient.url).toBeUndefined();
  });

  it('fills the defaults when on', () => {
    expect(parseConfig({ mqttClient: ON }, {}).mqttClient).toMatchObject({
      name: 'site-broker',
      protocolVersion: 4,
      qos: 1,
      keepaliveSeconds: 30,
      maxInFlight: 1000,
      retry: { minMs: 100, maxMs: 30_000 },
    });
  });

  it('refuses a url that is not mqtt:// or mqtts://', () => {
    expect(errorOf({ ...ON, url: 'http://broker.site' })).toContain(
      'mqttClient.url: must be an mqtt:// or mqtts:// URL with a host (got "http://broker.site")',
    );
  });

  it('requires clientId and topics when on', () => {
    const msg = errorOf({ url: 'mqtt://b' });
    expect(msg).toContain('mqttClient.clientId: required when url is set');
    expect(msg).toContain('mqttClient.topics: must name at least one topic filter');
  });

  it('refuses $share/ on MQTT 3.1.1 and takes it on 5', () => {
    expect(errorOf({ ...ON, topics: ['$share/gw/plant/#'] })).toContain(
      'mqttClient.topics[0]: shared subscriptions need protocolVersion: 5 (got "$share/gw/plant/#")',
    );
    const c = parseConfig({ mqttClient: { ...ON, protocolVersion: 5, topics: ['$share/gw/plant/#'] } }, {});
    expect(c.mqttClient.topics).toEqual(['$share/gw/plant/#']);
  });

  it('refuses malformed filters, qos, protocol versions and credentials', () => {
    expect(errorOf({ ...ON, topics: ['a/#/b'] })).toContain(
      "mqttClient.topics[0]: '#' must be a whole level",
    );
    expect(errorOf({ ...ON, protocolVersion: 5, topics: ['$share//x'] })).toContain(
      'mqttClient.topics[0]: a shared subscription is $share/<group>/<filter>',
    );
    expect(errorOf({ ...ON, qos: 3 })).toContain('mqttClient.qos: must be 0, 1 or 2 (got 3)');
    expect(errorOf({ ...ON, protocolVersion: 3 })).toContain(
      'mqttClient.protocolVersion: must be 4 (MQTT 3.1.1) or 5',
    );
    expect(errorOf({ ...ON, username: 'u', password: 'p', passwordFile: '/s' })).toContain(
      'mqttClient.passwordFile: set password or passwordFile, not both',
    );
    expect(errorOf({ ...ON, passwordFile: '/s' })).toContain('mqttClient.username: required with a password');
    expect(errorOf({ ...ON, tls: { caFile: '/ca' } })).toContain('mqttClient.tls: needs an mqtts:// url');
    expect(errorOf({ ...ON, url: 'mqtts://b', tls: { certFile: '/c' } })).toContain(
      'mqttClient.tls.keyFile: certFile and keyFile go together',
    );
    expect(errorOf({ ...ON, colour: 'red' })).toContain('mqttClient');
  });
});

describe('brokerKey', () => {
  it('lowercases the host and defaults the port by scheme', () => {
    expect(brokerKey('mqtt://Broker.Site')).toBe('broker.site:1883');
    expect(brokerKey('mqtts://broker.site')).toBe('broker.site:8883');
    expect(brokerKey('mqtt://broker.site:1884/')).toBe('broker.site:1884');
    expect(brokerKey('mqtt://user:pw@10.0.0.1:1883')).toBe('10.0.0.1:1883');
  });
});

describe('the loop rule between mqttClient and mqtt sinks on the same broker', () => {
  const sink = (over: Record<string, unknown>) => ({
    name: 'cloud',
    type: 'mqtt',
    url: 'mqtt://BROKER.site',
    ...over,
  });

  it('gives the client source the literal start of each same-broker bridge template, and nothing for other brokers', () => {
    const c = parseConfig(
      {
        node: { id: 'n7' },
        mqttClient: ON,
        sinks: [
          sink({ name: 'a', topic: 'edge/{node}/{topic}' }),
          sink({ name: 'b', url: 'mqtt://other.site', topic: 'up/{topic}' }),
        ],
      },
      {},
    );
    expect(bridgeLoop(c)).toEqual({ prefixes: ['edge/n7/'], unguarded: [] });
  });

  it('refuses a same-broker bridge whose template starts with a record field unless both sides speak MQTT 5', () => {
    let message = '';
    try {
      parseConfig({ mqttClient: ON, sinks: [sink({ topic: '{topic}' })] }, {});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('sinks[0].topic: publishes to the broker mqttClient reads from');
    const v5 = parseConfig(
      { mqttClient: { ...ON, protocolVersion: 5 }, sinks: [sink({ topic: '{topic}', protocolVersion: 5 })] },
      {},
    );
    expect(bridgeLoop(v5)).toEqual({ prefixes: [], unguarded: [] });
  });
});

describe('client ids on a shared broker', () => {
  it('refuses an mqtt sink whose client id (default edgeferry-<node>) is the client source one on the same broker', () => {
    const config = {
      node: { id: 'edge-01' },
      mqttClient: { ...ON, url: 'mqtt://broker.site', clientId: 'edgeferry-edge-01' },
      sinks: [{ name: 'up', type: 'mqtt', url: 'mqtt://broker.site:1883' }],
    };
    expect(() => parseConfig(config, {})).toThrow(
      /sinks\[0\]\.clientId: the same client id as mqttClient on the same broker/,
    );
    // Another broker, or another id, is fine.
    expect(() =>
      parseConfig({ ...config, sinks: [{ ...config.sinks[0], url: 'mqtt://cloud' }] }, {}),
    ).not.toThrow();
    expect(() =>
      parseConfig({ ...config, sinks: [{ ...config.sinks[0], clientId: 'up-1' }] }, {}),
    ).not.toThrow();
  });

  it('refuses two mqtt sinks with one client id on one broker', () => {
    const sink = { type: 'mqtt', url: 'mqtt://cloud', topic: 'a/{topic}' };
    expect(() =>
      parseConfig(
        {
          sinks: [
            { ...sink, name: 'a' },
            { ...sink, name: 'b' },
          ],
        },
        {},
      ),
    ).toThrow(/sinks\[1\]\.clientId: the same client id as sinks\[0\]/);
  });
});
