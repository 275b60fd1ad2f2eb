// The mqtt section's bounds and limits: defaults, units, and errors that name the field.

import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { deriveBudget } from '../../src/memory/budget.ts';
import { explicitSettings } from '../../src/memory/plan.ts';
import { configError } from './config-error.ts';

describe('mqtt bounds', () => {
  it('defaults keep a normal fleet working (mosquitto-like 1000 queued messages per client)', () => {
    const config = parseConfig({}, {});
    // Without a memory limit the budget gives the three it sizes their fixed defaults.
    const { budget } = deriveBudget(null, 'none', explicitSettings(config));
    expect(budget).toMatchObject({
      mqttQueuedBytes: 1024 ** 2,
      mqttQueuedMessagesTotal: 100_000,
      mqttQueuedBytesTotal: 64 * 1024 ** 2,
    });
    expect(config.mqtt).toMatchObject({
      maxQueuedMessages: 1000,
      maxRetainedMessages: 10_000,
      maxRetainedBytes: 16 * 1024 ** 2,
      maxAwaitingRel: 1000,
      maxAwaitingRelTotal: 100_000,
    });
  });

  it('takes byte sizes with units', () => {
    const { mqtt } = parseConfig({ mqtt: { maxQueuedBytes: '64KiB', maxRetainedBytes: '2MB' } }, {});
    expect(mqtt.maxQueuedBytes).toBe(65_536);
    expect(mqtt.maxRetainedBytes).toBe(2_000_000);
  });

  it('names the bad field and the value', () => {
    expect(configError({ mqtt: { maxQueuedMessages: 0 } })).toContain(
      'mqtt.maxQueuedMessages: must be an integer >= 1 (got 0)',
    );
    expect(configError({ mqtt: { maxQueuedBytes: 'lots' } })).toContain(
      'mqtt.maxQueuedBytes: invalid byte size "lots"',
    );
    expect(configError({ mqtt: { maxAwaitingRel: 70_000 } })).toContain(
      'mqtt.maxAwaitingRel: must be an integer in 1..65535 (got 70000)',
    );
    expect(configError({ mqtt: { maxQueuedMesages: 10 } })).toContain('maxQueuedMesages');
  });
});

describe('mqtt device security fields', () => {
  it('takes a TLS listener with its defaults, and port: false for TLS only', () => {
    const { mqtt } = parseConfig({ mqtt: { port: false, tls: { certFile: 's.crt', keyFile: 's.key' } } }, {});
    expect(mqtt.port).toBe(false);
    expect(mqtt.tls).toEqual({
      port: 8883,
      certFile: 's.crt',
      keyFile: 's.key',
      requireClientCert: false,
      identity: 'cn',
    });
    expect(mqtt.reloadCheckMs).toBe(10_000);
    expect(mqtt.passwordFile).toBeUndefined();
  });

  it('names what is missing or wrong', () => {
    expect(
      configError({ mqtt: { tls: { certFile: 's.crt', keyFile: 's.key', requireClientCert: true } } }),
    ).toContain('mqtt.tls.caFile: required with requireClientCert: true');
    expect(configError({ mqtt: { tls: { certFile: 's.crt' } } })).toContain('mqtt.tls.keyFile: required');
    expect(configError({ mqtt: { tls: { certFile: 's.crt', keyFile: 'k', identity: 'email' } } })).toContain(
      'mqtt.tls.identity: expected one of cn|san-dns|san-uri',
    );
    expect(configError({ mqtt: { passwordFile: '' } })).toContain('mqtt.passwordFile: must not be empty');
    expect(configError({ mqtt: { tls: { certFile: 'c', keyFile: 'k', cafile: 'x' } } })).toContain(
      'mqtt.tls',
    );
  });
});

describe('mqtt.limits', () => {
  it('defaults: far above a site, no publish rate', () => {
    const { mqtt } = parseConfig({}, {});
    expect(mqtt.limits).toEqual({
      maxConnections: 5000,
      maxTopicBytes: 1024,
      maxTopicLevels: 32,
      maxInflight: 10_000,
    });
  });

  it('a publish rate: burst defaults to one second of it, onExceed to disconnect', () => {
    const { mqtt } = parseConfig(
      { mqtt: { limits: { publishRate: { messagesPerSecond: 2.5 }, maxTopicBytes: '2KiB' } } },
      {},
    );
    expect(mqtt.limits.publishRate).toEqual({ messagesPerSecond: 2.5, burst: 3, onExceed: 'disconnect' });
    expect(mqtt.limits.maxTopicBytes).toBe(2048);
  });

  it('names the bad field', () => {
    expect(configError({ mqtt: { limits: { maxTopicLevels: 101 } } })).toContain(
      'mqtt.limits.maxTopicLevels: must be an integer in 1..100 (got 101)',
    );
    expect(configError({ mqtt: { limits: { maxConnections: 0 } } })).toContain(
      'mqtt.limits.maxConnections: must be an integer >= 1 (got 0)',
    );
    expect(configError({ mqtt: { limits: { publishRate: { messagesPerSecond: 0 } } } })).toContain(
      'mqtt.limits.publishRate.messagesPerSecond: must be a number > 0',
    );
    expect(
      configError({ mqtt: { limits: { publishRate: { messagesPerSecond: 5, onExceed: 'kick' } } } }),
    ).toContain('mqtt.limits.publishRate.onExceed');
    expect(configError({ mqtt: { limits: { maxInflights: 5 } } })).toContain('maxInflights');
  });
});
