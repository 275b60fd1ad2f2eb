import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfig, loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { loadConfigIsolated } from '../../src/config/load-isolated.ts';
import { parseBytes, parseDuration } from '../../src/config/units.ts';
import { ConfigError } from '../../src/core/errors.ts';

const NO_ENV = {};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeferry-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeFile(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

/** The ConfigError message `fn` throws; fails the test if it throws anything else or nothing. */
function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

const invalid = (raw: unknown, env: NodeJS.ProcessEnv = NO_ENV) => configErrorOf(() => parseConfig(raw, env));

const sink = (extra: Record<string, unknown> = {}) => ({
  name: 'cloud',
  type: 'http',
  url: 'http://127.0.0.1:9000/ingest',
  ...extra,
});

const EXAMPLE = `
node: { id: edge-01 }
journal:
  path: ./data
  maxBytes: 1GiB
  onFull: drop-oldest
  ttl: 7d
  fsync: false
  groupCommit: { maxRecords: 4096, maxDelayMs: 0 }
  lockWaitMs: 30s
mqtt:
  enabled: true
  host: 0.0.0.0
  port: 1883
  maxPacketBytes: 262144
admin: { enabled: true, host: 0.0.0.0, port: 8080 }
log: { level: info }
shutdown: { drainTimeoutMs: 10s }
sinks:
  - name: cloud
    type: http
    url: http://127.0.0.1:9000/ingest
    routes: ["sensors/#"]
    headers: { Authorization: "Bearer x" }
    payloadEncoding: base64
    timeoutMs: 10s
    batch: { maxRecords: 500, maxBytes: 1MiB, lingerMs: 5 }
    retry: { minMs: 100, maxMs: 30000 }
`;

describe('units', () => {
  it('parses byte sizes with 1000- and 1024-based units', () => {
    expect(parseBytes(512)).toBe(512);
    expect(parseBytes('512')).toBe(512);
    expect(parseBytes('512B')).toBe(512);
    expect(parseBytes('64KiB')).toBe(65_536);
    expect(parseBytes('1MiB')).toBe(1_048_576);
    expect(parseBytes('1GiB')).toBe(1_073_741_824);
    expect(parseBytes('10MB')).toBe(10_000_000);
    expect(parseBytes('2KB')).toBe(2000);
    expect(parseBytes('1GB')).toBe(1e9);
    expect(parseBytes('1.5KiB')).toBe(1536);
    expect(parseBytes('64 kib')).toBe(65_536);
  });

  it('rejects malformed byte sizes with a clear message', () => {
    for (const bad of ['10XB', '', 'KiB', '-1', '1.5B', '1e3', 'constructor', -1, 1.5, Number.NaN]) {
      expect(() => parseBytes(bad)).toThrow(/^invalid byte size .*: expected .*KiB/);
    }
    expect(() => parseBytes('10XB')).toThrow('invalid byte size "10XB"');
  });

  it('parses durations to milliseconds', () => {
    expect(parseDuration(250)).toBe(250);
    expect(parseDuration('250')).toBe(250);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1.1s')).toBe(1100);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('7d')).toBe(604_800_000);
  });

  it('rejects malformed durations with a clear message', () => {
    for (const bad of ['5 parsecs', '', 's', '-5s', '10M', '0.5ms', -1, 1.5, Number.POSITIVE_INFINITY]) {
      expect(() => parseDuration(bad)).toThrow(/^invalid duration .*: expected .* ms, s, m, h or d$/);
    }
  });
});

describe('defaults', () => {
  it('fills every section when the config is empty', () => {
    const config = defaultConfig(NO_ENV);
    expect(config).toEqual({
      node: { id: os.hostname() },
      journal: {
        path: './data',
        maxBytes: 1024 ** 3,
        onFull: 'drop-oldest',
        fsync: false,
        groupCommit: { maxRecords: 4096, maxDelayMs: 0 },
        // maxPendingBytes: left to the memory budget (16 MiB without a limit: test/memory/).
        lockWaitMs: 30_000,
      },
      coap: {
        enabled: true,
        host: '0.0.0.0',
        port: 5683,
        prefix: 't',
        maxPayloadBytes: 64 * 1024,
        devices: [],
      },
      modbus: { retry: { minMs: 100, maxMs: 30_000 }, devices: [] },
      mqtt: {
        enabled: true,
        host: '0.0.0.0',
        port: 1883,
        maxPacketBytes: 256 * 1024,
        maxQueuedMessages: 1000,
        // maxQueuedBytes, maxQueuedMessagesTotal, maxQueuedBytesTotal: the memory budget's.
        maxRetainedMessages: 10_000,
        maxRetainedBytes: 16 * 1024 ** 2,
        maxAwaitingRel: 1000,
        maxAwaitingRelTotal: 100_000,
        reloadCheckMs: 10_000,
        limits: { maxConnections: 5000, maxTopicBytes: 1024, maxTopicLevels: 32, maxInflight: 10_000 },
      },
      // Off: no url.
      mqttClient: {
        name: 'site-broker',
        protocolVersion: 4,
        topics: [],
        qos: 1,
        keepaliveSeconds: 30,
        connectTimeoutMs: 10_000,
        maxInFlight: 1000,
        maxPacketBytes: 256 * 1024,
        retry: { minMs: 100, maxMs: 30_000 },
      },
      admin: { enabled: true, host: '0.0.0.0', port: 8080, protectMetrics: false },
      grpc: {
        enabled: true,
        host: '0.0.0.0',
        port: 50051,
        keepalive: { timeMs: 20_000, timeoutMs: 10_000 },
        consumers: { expireAfter: 86_400_000 },
      },
      log: { level: 'info' },
      // No limit of its own: the container's, if any, is read at start-up.
      memory: {},
      shutdown: { drainTimeoutMs: 10_000 },
      sinks: [],
    });
    expect(config.journal.ttl).toBeUndefined();
  });

  it('treats null sections (a YAML key with nothing under it) and a null document as absent', () => {
    expect(parseConfig({ journal: null, sinks: null, mqtt: null }, NO_ENV)).toEqual(defaultConfig(NO_ENV));
    expect(parseConfig(null, NO_ENV)).toEqual(defaultConfig(NO_ENV));
  });

  it('keeps defaults for the keys a partial section leaves out', () => {
    const config = parseConfig({ mqtt: { port: 0 }, journal: { groupCommit: { maxRecords: 1 } } }, NO_ENV);
    expect(config.mqtt).toMatchObject({ enabled: true, host: '0.0.0.0', port: 0, maxPacketBytes: 262_144 });
    expect(config.mqtt.maxQueuedMessages).toBe(1000);
    expect(config.journal.groupCommit).toEqual({ maxRecords: 1, maxDelayMs: 0 });
  });

  it('fills sink defaults', () => {
    const [s] = parseConfig({ sinks: [sink()] }, NO_ENV).sinks;
    expect(s).toEqual({
      name: 'cloud',
      type: 'http',
      url: 'http://127.0.0.1:9000/ingest',
      routes: ['#'],
      payloadEncoding: 'base64',
      timeoutMs: 10_000,
      // maxBytes: the memory budget's (1 MiB without a limit).
      batch: { maxRecords: 500, lingerMs: 5 },
      retry: { minMs: 100, maxMs: 30_000 },
    });
  });

  it('does not share default arrays between parses', () => {
    const a = parseConfig({ sinks: [sink()] }, NO_ENV);
    a.sinks[0].routes.push('x');
    a.sinks.push(a.sinks[0]);
    const b = parseConfig({ sinks: [sink()] }, NO_ENV);
    expect(b.sinks[0].routes).toEqual(['#']);
    expect(defaultConfig(NO_ENV).sinks).toEqual([]);
  });
});

describe('the example configuration', () => {
  it('parses, with units converted', () => {
    const config = loadConfigFile(writeFile('example.yaml', EXAMPLE), NO_ENV);
    expect(config.node.id).toBe('edge-01');
    expect(config.journal).toEqual({
      path: './data',
      maxBytes: 1_073_741_824,
      onFull: 'drop-oldest',
      ttl: 7 * 24 * 3600 * 1000,
      fsync: false,
      groupCommit: { maxRecords: 4096, maxDelayMs: 0 },
      lockWaitMs: 30_000,
    });
    expect(config.mqtt.maxPacketBytes).toBe(262_144);
    expect(config.shutdown.drainTimeoutMs).toBe(10_000);
    expect(config.sinks).toEqual([
      {
        name: 'cloud',
        type: 'http',
        url: 'http://127.0.0.1:9000/ingest',
        routes: ['sensors/#'],
        headers: { Authorization: 'Bearer x' },
        payloadEncoding: 'base64',
        timeoutMs: 10_000,
        batch: { maxRecords: 500, maxBytes: 1_048_576, lingerMs: 5 },
        retry: { minMs: 100, maxMs: 30_000 },
      },
    ]);
  });

  it('accepts an empty file as all defaults', () => {
    expect(loadConfigFile(writeFile('empty.yaml', '# nothing set\n'), NO_ENV)).toEqual(defaultConfig(NO_ENV));
  });

  it('treats `ttl: null` as no TTL', () => {
    expect(parseConfig({ journal: { ttl: null } }, NO_ENV).journal.ttl).toBeUndefined();
  });
});

describe('validation errors name the field and the reason', () => {
  it('starts with a header and puts one problem on each line', () => {
    const message = invalid({ mqtt: { prot: 1884 }, journal: { onFull: 'sometimes' } });
    expect(message.split('\n')).toEqual([
      'invalid configuration:',
      '  journal.onFull: expected one of drop-oldest|reject (got "sometimes")',
      '  mqtt.prot: unknown field',
    ]);
  });

  it('bad sink url', () => {
    expect(invalid({ sinks: [sink({ url: 'ftp://x' })] })).toContain(
      'sinks[0].url: must be an http(s) URL (got "ftp://x")',
    );
    expect(invalid({ sinks: [sink({ url: 'not a url' })] })).toContain(
      'sinks[0].url: must be an http(s) URL',
    );
  });

  it('bad grpc.keepalive', () => {
    expect(invalid({ grpc: { keepalive: { timeMs: '5 parsecs', timeoutMs: 10 } } }).split('\n')).toEqual([
      'invalid configuration:',
      '  grpc.keepalive.timeMs: invalid duration "5 parsecs": expected a non-negative whole number of milliseconds, or a number with a unit ms, s, m, h or d',
      '  grpc.keepalive.timeoutMs: must be at least 100 ms (got 10)',
    ]);
  });

  it('grpc.consumers.expireAfter: a duration a timer can hold', () => {
    expect(parseConfig({ grpc: { consumers: { expireAfter: '2h' } } }, NO_ENV).grpc.consumers).toEqual({
      expireAfter: 7_200_000,
    });
    expect(invalid({ grpc: { consumers: { expireAfter: '30d' } } })).toContain(
      'grpc.consumers.expireAfter: must be at most 2147483647 ms, the longest timer Node supports (got "30d")',
    );
    expect(invalid({ grpc: { consumers: { expireAfter: 0 } } })).toContain(
      'grpc.consumers.expireAfter: must be at least 1 ms (got 0)',
    );
  });

  it('bad journal.onFull', () => {
    expect(invalid({ journal: { onFull: 'sometimes' } })).toContain(
      'journal.onFull: expected one of drop-oldest|reject (got "sometimes")',
    );
  });

  it('unknown keys, at any depth', () => {
    expect(invalid({ mqtt: { prot: 1884 } })).toContain('mqtt.prot: unknown field');
    expect(invalid({ mqqt: {} })).toContain('mqqt: unknown field');
    expect(invalid({ sinks: [sink({ batch: { maxRecord: 1 } })] })).toContain(
      'sinks[0].batch.maxRecord: unknown field',
    );
  });

  it('coap: the server prefix, device names, URLs, PSK and polling, each named by its field', () => {
    expect(invalid({ coap: { prefix: '.well-known' } })).toContain('coap.prefix: must not be .well-known');
    expect(invalid({ coap: { prefix: 'a/b' } })).toContain('coap.prefix: must be one path segment');
    const device = (over: Record<string, unknown> = {}) => ({ name: 'd1', url: 'coap://10.0.0.5', ...over });
    const message = invalid({
      coap: {
        devices: [
          device(),
          device(),
          device({ name: 'd2', url: 'coaps://10.0.0.6' }),
          device({ name: 'd3', url: 'http://x' }),
          device({ name: 'd4', resources: [{ path: '/t', topic: 't', observe: false }] }),
        ],
      },
    });
    expect(message).toContain('coap.devices[1].name: duplicate device name "d1" (also used by devices[0])');
    expect(message).toContain('coap.devices[2].psk: required for a coaps:// device');
    expect(message).toContain('coap.devices[3].url: must be a coap:// or coaps:// URL');
    expect(message).toContain('coap.devices[4].resources[0].pollIntervalMs: required when observe is false');
  });

  it('duplicate sink names, even alongside other problems', () => {
    // An unknown type aborts parsing that sink, which must not hide the duplicate.
    const message = invalid({
      sinks: [sink(), sink({ url: 'ftp://x' }), sink({ name: 'x', type: 'kafka' }), 'str'],
    });
    expect(message).toContain('sinks[1].name: duplicate sink name "cloud" (also used by sinks[0])');
    expect(message).toContain('sinks[1].url: must be an http(s) URL');
    expect(message).toContain('sinks[2].type: expected one of http|grpc|mqtt (got "kafka")');
    expect(message).toContain('sinks[3]: expected a mapping (got "str")');
  });

  it('bad sink name', () => {
    expect(invalid({ sinks: [sink({ name: 'my sink' })] })).toContain(
      'sinks[0].name: must match [A-Za-z0-9_.-]+ (got "my sink")',
    );
  });

  it('bad route filter', () => {
    expect(invalid({ sinks: [sink({ routes: ['ok/+', 'a/#/b'] })] })).toContain(
      "sinks[0].routes[1]: '#' must be a whole level and the last one: a/#/b",
    );
    expect(invalid({ sinks: [sink({ routes: [] })] })).toContain('sinks[0].routes: must list at least one');
  });

  it('unknown or missing sink type', () => {
    expect(invalid({ sinks: [sink({ type: 'kafka' })] })).toContain(
      'sinks[0].type: expected one of http|grpc|mqtt (got "kafka")',
    );
    expect(invalid({ sinks: [{ name: 'x', url: 'http://h/' }] })).toContain('sinks[0].type: required');
  });

  it('missing required sink fields', () => {
    expect(invalid({ sinks: [{ name: 'x', type: 'http' }] })).toContain('sinks[0].url: required');
  });

  it('port out of range or not an integer', () => {
    expect(invalid({ mqtt: { port: 70000 } })).toContain(
      'mqtt.port: must be a port in 0..65535 or false (got 70000)',
    );
    expect(invalid({ admin: { port: -1 } })).toContain('admin.port: must be an integer in 0..65535 (got -1)');
    expect(invalid({ admin: { port: 80.5 } })).toContain('admin.port: must be an integer in 0..65535');
    expect(invalid({ mqtt: { port: '1883' } })).toContain(
      'mqtt.port: must be a port in 0..65535 or false (got "1883")',
    );
    expect(invalid({ mqtt: { port: true } })).toContain(
      'mqtt.port: must be a port in 0..65535 or false (got true)',
    );
  });

  it('retry minMs greater than maxMs', () => {
    expect(invalid({ sinks: [sink({ retry: { minMs: '5s', maxMs: 100 } })] })).toContain(
      'sinks[0].retry.minMs: must be <= maxMs (got 5000 > 100)',
    );
    // Against the default maxMs (30s) too.
    expect(invalid({ sinks: [sink({ retry: { minMs: '1m' } })] })).toContain(
      'sinks[0].retry.minMs: must be <= maxMs',
    );
  });

  it('bad byte size string', () => {
    expect(invalid({ journal: { maxBytes: '10XB' } })).toContain(
      'journal.maxBytes: invalid byte size "10XB"',
    );
    expect(invalid({ sinks: [sink({ batch: { maxBytes: '1 gigabyte' } })] })).toContain(
      'sinks[0].batch.maxBytes: invalid byte size "1 gigabyte"',
    );
    expect(invalid({ journal: { maxBytes: 0 } })).toContain(
      'journal.maxBytes: must be at least 1 byte (got 0)',
    );
    expect(invalid({ mqtt: { maxPacketBytes: true } })).toContain(
      'mqtt.maxPacketBytes: expected a byte size such as 65536 or 64KiB (got true)',
    );
  });

  it('bad durations, including timers longer than setTimeout allows', () => {
    expect(invalid({ shutdown: { drainTimeoutMs: 'soon' } })).toContain(
      'shutdown.drainTimeoutMs: invalid duration "soon"',
    );
    expect(invalid({ sinks: [sink({ timeoutMs: '30d' })] })).toContain(
      'sinks[0].timeoutMs: must be at most 2147483647 ms',
    );
  });

  it('other type and value errors', () => {
    const message = invalid({
      log: { level: 'verbose' },
      mqtt: { enabled: 'yes' },
      journal: { path: '' },
      sinks: [sink({ headers: { 'bad header': 'x', 'X-Ok': 5 } })],
      admin: [],
    });
    expect(message).toContain(
      'log.level: expected one of fatal|error|warn|info|debug|trace|silent (got "verbose")',
    );
    expect(message).toContain('mqtt.enabled: expected true or false (got "yes")');
    expect(message).toContain('journal.path: must not be empty');
    expect(message).toContain('sinks[0].headers.X-Ok: expected a string (got 5)');
    expect(message).toContain('admin: expected a mapping (got a list)');
    expect(invalid({ sinks: [sink({ headers: { 'bad header': 'x' } })] })).toContain(
      'sinks[0].headers["bad header"]: is not a valid HTTP header name',
    );
    expect(invalid({ sinks: [sink({ headers: { 'Content-Length': '5' } })] })).toContain(
      'sinks[0].headers.Content-Length: is set by the sink for each request',
    );
    expect(invalid([1])).toContain('(top level): expected a mapping (got a list)');
    expect(invalid({ sinks: sink() })).toContain('sinks: expected a list (got a mapping)');
  });
});

describe('environment overrides', () => {
  it('NODE_NAME overrides node.id', () => {
    expect(parseConfig({}, { NODE_NAME: 'k8s-node-7' }).node.id).toBe('k8s-node-7');
    expect(parseConfig({ node: { id: 'from-file' } }, { NODE_NAME: 'k8s-node-7' }).node.id).toBe(
      'k8s-node-7',
    );
    expect(parseConfig({ node: { id: 'from-file' } }, { NODE_NAME: '' }).node.id).toBe('from-file');
  });

  it('EDGEFERRY_LOG_LEVEL overrides log.level and is validated like the file', () => {
    expect(parseConfig({ log: { level: 'warn' } }, { EDGEFERRY_LOG_LEVEL: 'debug' }).log.level).toBe('debug');
    expect(invalid({}, { EDGEFERRY_LOG_LEVEL: 'loud' })).toContain(
      'log.level: expected one of fatal|error|warn|info|debug|trace|silent (got "loud") (from EDGEFERRY_LOG_LEVEL)',
    );
  });

  it('leaves the caller’s object untouched', () => {
    const raw = { node: { id: 'from-file' } };
    parseConfig(raw, { NODE_NAME: 'k8s-node-7' });
    expect(raw).toEqual({ node: { id: 'from-file' } });
  });

  it('reads process.env by default', () => {
    const saved = process.env.NODE_NAME;
    process.env.NODE_NAME = 'from-process-env';
    try {
      expect(defaultConfig().node.id).toBe('from-process-env');
    } finally {
      if (saved === undefined) delete process.env.NODE_NAME;
      else process.env.NODE_NAME = saved;
    }
  });
});

describe('loadConfigFile', () => {
  it('reports a missing file with its path', () => {
    const file = path.join(tmp, 'does-not-exist.yaml');
    expect(configErrorOf(() => loadConfigFile(file, NO_ENV))).toBe(`configuration file not found: ${file}`);
  });

  it('reports a YAML syntax error with the file, line and column', () => {
    const file = writeFile('syntax.yaml', 'mqtt:\n  port: 1883\nsinks: [a, b\n');
    const message = configErrorOf(() => loadConfigFile(file, NO_ENV));
    expect(message).toMatch(/^invalid YAML:\n/);
    expect(message).toContain(`${file}:4:1: `);
  });

  it('reports duplicate keys as a YAML error', () => {
    const file = writeFile('dup.yaml', 'mqtt:\n  port: 1883\n  port: 1884\n');
    expect(configErrorOf(() => loadConfigFile(file, NO_ENV))).toContain(
      `${file}:3:3: Map keys must be unique`,
    );
  });

  it('reports validation problems at their line, in file order', () => {
    const file = writeFile(
      'invalid.yaml',
      [
        'journal:',
        '  onFull: sometimes',
        'mqtt:',
        '  prot: 1884',
        'sinks:',
        '  - name: cloud',
        '    type: http',
      ].join('\n'),
    );
    expect(configErrorOf(() => loadConfigFile(file, NO_ENV)).split('\n')).toEqual([
      'invalid configuration:',
      `  ${file}:2:3: journal.onFull: expected one of drop-oldest|reject (got "sometimes")`,
      `  ${file}:4:3: mqtt.prot: unknown field`,
      `  ${file}:6:5: sinks[0].url: required`,
    ]);
  });

  it('applies environment overrides to the file', () => {
    const file = writeFile('node.yaml', 'node: { id: from-file }\n');
    expect(loadConfigFile(file, { NODE_NAME: 'k8s-node-7' }).node.id).toBe('k8s-node-7');
  });
});

// The config as the daemon loads it: in a child process, compared with loading in this process.
describe('loadConfigIsolated', () => {
  it('returns exactly what loading in-process returns, environment overrides included', async () => {
    const file = writeFile(
      'full.yaml',
      [
        'journal:',
        '  maxBytes: 64MiB',
        '  ttl: 2h',
        'sinks:',
        '  - name: cloud',
        '    type: http',
        '    url: http://127.0.0.1:9000/ingest',
        '    headers: { authorization: Bearer x }',
        '    routes: ["sensors/#"]',
        '',
      ].join('\n'),
    );
    expect(await loadConfigIsolated(file)).toEqual(loadConfigFile(file));
    expect(await loadConfigIsolated(undefined)).toEqual(defaultConfig());
    // The child sees the daemon's environment: NODE_NAME names the node, as in-process.
    process.env.NODE_NAME = 'edge-node-7';
    try {
      const cfg = await loadConfigIsolated(file);
      expect(cfg.node.id).toBe('edge-node-7');
    } finally {
      delete process.env.NODE_NAME;
    }
  });

  it('rejects with the same ConfigError text for a bad field and for a missing file', async () => {
    const bad = writeFile('bad.yaml', 'journal:\n  onFull: sideways\nmqtt:\n  port: 99999\n');
    for (const file of [bad, path.join(tmp, 'missing.yaml')]) {
      let inProcess = '';
      try {
        loadConfigFile(file);
      } catch (err) {
        inProcess = (err as Error).message;
      }
      expect(inProcess).not.toBe('');
      const err = await loadConfigIsolated(file).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toBe(inProcess);
    }
  });
});
