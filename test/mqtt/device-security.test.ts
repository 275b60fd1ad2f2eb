// Device security end to end: the daemon with a TLS listener, a credentials file and an ACL, an
// HTTP sink to a real receiver, and real clients (mqtt.js, mosquitto_pub). What is refused is
// refused with the right code, what is outside the ACL never reaches the sink, and what is
// allowed arrives.

import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setPassword } from '../../src/sources/mqtt-broker/passwd-command.ts';
import { hashPassword } from '../../src/sources/mqtt-broker/password-file.ts';
import { generatePki, type TestPki } from '../grpc/certs.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { HttpReceiver } from '../helpers/http-receiver.ts';
import { itWithPeer, mosquittoClients } from '../interop/peer-tools.ts';
import { issue, metric, tlsPort } from './security-helpers.ts';

const FAST = { ln: 4, r: 8, p: 1 };
const ACL = `# devices write their own telemetry; alice has her tree
user alice
topic readwrite alice/#
topic deny alice/secret
user client
topic write certs/#
pattern write devices/%u/telemetry
`;

/** Connected, or the error (a CONNACK refusal, a TLS error) or close that ended the attempt. */
function connect(url: string, opts: IClientOptions): Promise<MqttClient> {
  const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, protocolVersion: 4, ...opts });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
    c.once('close', () => reject(Object.assign(new Error('closed before CONNACK'), { code: 'CLOSED' })));
  });
}

/** The CONNACK return code or TLS error a refused connection ends with. */
async function refusal(url: string, opts: IClientOptions): Promise<string> {
  try {
    const c = await connect(url, opts);
    await c.endAsync();
    return 'accepted';
  } catch (err) {
    const e = err as { code?: number | string; message: string };
    return typeof e.code === 'number' ? `connack ${e.code}` : `error ${e.code ?? e.message}`;
  }
}

describe('MQTT device security (TLS, passwords, ACL)', () => {
  let dir: string;
  let pki: TestPki;
  let receiver: HttpReceiver;
  let d: DaemonHandle;
  let tls: string;
  let plain: string;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    dir = tempDir('edgeferry-mqtt-sec-');
    pki = generatePki(dir);
    receiver = new HttpReceiver();
    await receiver.start();
    writeFileSync(
      join(dir, 'passwords'),
      `alice:${await hashPassword('alice-pw', FAST)}\nbob:${await hashPassword('bob-pw', FAST)}\n`,
    );
    writeFileSync(join(dir, 'acl'), ACL);
    const config = baseConfig(dir, {
      mqtt: {
        host: '127.0.0.1',
        port: 0,
        tls: { port: 0, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, caFile: pki.caFile },
        passwordFile: join(dir, 'passwords'),
        aclFile: join(dir, 'acl'),
        reloadCheckMs: 100,
      },
      sinks: [{ name: 'up', type: 'http', url: receiver.url, batch: { lingerMs: 0 } }],
    });
    d = await startDaemon(dir, writeConfig(dir, config));
    tls = `mqtts://127.0.0.1:${tlsPort(d)}`;
    plain = `mqtt://127.0.0.1:${d.mqttPort}`;
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await d?.stop();
    await receiver?.stop();
  });

  const tlsOpts = (o: IClientOptions = {}): IClientOptions => ({ ca: pki.ca, servername: 'localhost', ...o });

  it('listens on TLS beside plain TCP', () => {
    expect(tlsPort(d)).toBeGreaterThan(0);
    expect(d.mqttPort).toBeGreaterThan(0);
  });

  it('refuses wrong passwords with CONNACK 4 and missing credentials with CONNACK 5, on both listeners', async () => {
    const before = await d.metrics();
    expect(await refusal(tls, tlsOpts({ clientId: 'w1', username: 'alice', password: 'nope' }))).toBe(
      'connack 4',
    );
    expect(await refusal(tls, tlsOpts({ clientId: 'w2', username: 'mallory', password: 'alice-pw' }))).toBe(
      'connack 4',
    );
    expect(await refusal(tls, tlsOpts({ clientId: 'w3' }))).toBe('connack 5');
    expect(await refusal(plain, { clientId: 'w4' })).toBe('connack 5');
    expect(await refusal(plain, { clientId: 'w5', username: 'bob', password: 'alice-pw' })).toBe('connack 4');
    const after = await d.metrics();
    const refused = (reason: string, t: string) =>
      metric(t, 'edgeferry_mqtt_auth_refused_total', `reason="${reason}"`);
    expect(refused('bad-credentials', after) - refused('bad-credentials', before)).toBe(3);
    expect(refused('not-authorized', after) - refused('not-authorized', before)).toBe(2);
    // A refusal is not a protocol error.
    const proto = (t: string) => metric(t, 'edgeferry_ingress_protocol_errors_total', 'protocol="mqtt"');
    expect(proto(after)).toBe(proto(before));
    // Throttled, but at least one line says why.
    expect(d.logs.some((l) => l.msg === 'mqtt connection refused: CONNACK 4')).toBe(true);
  });

  it('a publish outside the ACL is acknowledged, counted and never reaches the sink', async () => {
    const alice = await connect(
      tls,
      tlsOpts({ clientId: 'alice-dev', username: 'alice', password: 'alice-pw' }),
    );
    clients.push(alice);
    const denied0 = metric(await d.metrics(), 'edgeferry_mqtt_acl_denied_total', 'action="publish"');
    await alice.publishAsync('bob/x', 'not hers', { qos: 1 });
    await alice.publishAsync('alice/secret', 'denied line', { qos: 1 });
    await alice.publishAsync('devices/bob/telemetry', '%u is alice, not bob', { qos: 0 });
    await alice.publishAsync('bob/r', 'forbidden retain', { qos: 1, retain: true });
    await alice.publishAsync('bob/q2', 'forbidden exactly once', { qos: 2 }); // PUBREC, PUBCOMP all the same
    await alice.publishAsync('alice/temp', 'ok-1', { qos: 1 });
    await alice.publishAsync('devices/alice/telemetry', 'ok-2', { qos: 1 });
    await eventually(
      () => receiver.records.some((r) => r.topic === 'devices/alice/telemetry'),
      'ok-2 upstream',
    );
    const topics = receiver.records.map((r) => r.topic);
    expect(topics).toContain('alice/temp');
    expect(topics).toContain('devices/alice/telemetry');
    expect(topics).not.toContain('bob/x');
    expect(topics).not.toContain('bob/r');
    expect(topics).not.toContain('bob/q2');
    expect(topics).not.toContain('alice/secret');
    expect(topics).not.toContain('devices/bob/telemetry');
    expect(topics.some((t) => t.startsWith('$edgeferry'))).toBe(false);
    expect(receiver.records.find((r) => r.topic === 'alice/temp')?.device).toBe('alice-dev');
    const denied = metric(await d.metrics(), 'edgeferry_mqtt_acl_denied_total', 'action="publish"');
    expect(denied - denied0).toBe(5);
    expect(alice.connected).toBe(true);
    const status = await d.status();
    expect(status.sources.find((s) => s.name === 'mqtt')?.counters.aclPublishDenied).toBe(denied);
  });

  it('a will message is held to the same ACL as a publish', async () => {
    const denied0 = metric(await d.metrics(), 'edgeferry_mqtt_acl_denied_total', 'action="publish"');
    const will = (topic: string) => ({ topic, payload: Buffer.from('gone'), qos: 1 as const, retain: false });
    const a = await connect(
      tls,
      tlsOpts({ clientId: 'will-ok', username: 'alice', password: 'alice-pw', will: will('alice/will') }),
    );
    const b = await connect(
      tls,
      tlsOpts({ clientId: 'will-no', username: 'alice', password: 'alice-pw', will: will('bob/will') }),
    );
    // Gone without a DISCONNECT: the broker publishes their wills [MQTT-3.1.2-8].
    b.stream.destroy();
    a.stream.destroy();
    await eventually(
      () => receiver.records.some((r) => r.topic === 'alice/will'),
      'the allowed will upstream',
    );
    await eventually(
      async () =>
        metric(await d.metrics(), 'edgeferry_mqtt_acl_denied_total', 'action="publish"') === denied0 + 1,
      'the denied will counted',
    );
    expect(receiver.records.some((r) => r.topic === 'bob/will')).toBe(false);
  });

  it('refuses a subscription outside the ACL with SUBACK 0x80 and grants the others', async () => {
    const alice = await connect(
      tls,
      tlsOpts({ clientId: 'alice-sub', username: 'alice', password: 'alice-pw' }),
    );
    clients.push(alice);
    // mqtt.js rejects a SUBACK with a refusal in it, and hands over the packet.
    const suback = await alice
      .subscribeAsync({ 'alice/#': { qos: 1 }, 'bob/#': { qos: 1 }, '#': { qos: 0 } })
      .then(
        () => null,
        (err: { packet?: { granted: number[] } }) => err.packet,
      );
    expect(suback?.granted).toEqual([1, 128, 128]);
    // Granted on alice/#, yet the deny line keeps alice/secret from being delivered.
    const got: string[] = [];
    alice.on('message', (t) => got.push(t));
    const pub = await connect(
      tls,
      tlsOpts({ clientId: 'alice-pub', username: 'alice', password: 'alice-pw' }),
    );
    clients.push(pub);
    await pub.publishAsync('alice/secret', 'x', { qos: 1 });
    await pub.publishAsync('alice/open', 'y', { qos: 1 });
    await eventually(() => got.includes('alice/open'), 'alice/open delivered');
    expect(got).not.toContain('alice/secret');
    expect(metric(await d.metrics(), 'edgeferry_mqtt_acl_denied_total', 'action="subscribe"')).toBe(2);
  });

  it("a verified client certificate is the device's identity (its CN), without a password", async () => {
    const dev = await connect(
      tls,
      tlsOpts({ clientId: 'cert-dev', cert: pki.clientCert, key: pki.clientKey }),
    );
    clients.push(dev);
    await dev.publishAsync('certs/a', 'by certificate', { qos: 1 });
    await dev.publishAsync('devices/client/telemetry', 'pattern %u = CN', { qos: 1 });
    await dev.publishAsync('alice/temp', 'not the CN user', { qos: 1 });
    await eventually(
      () => receiver.records.filter((r) => r.device === 'cert-dev').length >= 2,
      'two certificate records upstream',
    );
    const topics = receiver.records.filter((r) => r.device === 'cert-dev').map((r) => r.topic);
    expect(topics.sort()).toEqual(['certs/a', 'devices/client/telemetry']);
  });

  it('refuses a certificate from another CA and an expired one at the handshake', async () => {
    const expired = issue(pki.dir, 'expired-client', { cn: 'client', days: -1 });
    const before = metric(await d.metrics(), 'edgeferry_mqtt_auth_refused_total', 'reason="tls"');
    const old = await refusal(
      tls,
      tlsOpts({ clientId: 'e', cert: readFileSync(expired.certFile), key: readFileSync(expired.keyFile) }),
    );
    expect(old).not.toBe('accepted');
    const other = await refusal(
      tls,
      tlsOpts({ clientId: 'o', cert: pki.otherClientCert, key: pki.otherClientKey }),
    );
    expect(other).not.toBe('accepted');
    await eventually(
      async () =>
        metric(await d.metrics(), 'edgeferry_mqtt_auth_refused_total', 'reason="tls"') - before >= 2,
      'both refusals counted',
    );
    const lines = d.logs.filter((l) => l.msg === 'mqtt tls connection refused');
    expect(
      lines.some((l) => /CERT_HAS_EXPIRED/.test(String(l.err))),
      JSON.stringify(lines),
    ).toBe(true);
  });

  it('applies a changed credentials file and ACL without a restart; a broken ACL is refused, the old one kept', async () => {
    expect(
      await refusal(tls, tlsOpts({ clientId: 'carol-1', username: 'carol', password: 'carol-pw' })),
    ).toBe('connack 4');
    await setPassword(join(dir, 'passwords'), 'carol', 'carol-pw');
    await eventually(
      async () =>
        (await refusal(tls, tlsOpts({ clientId: 'carol-2', username: 'carol', password: 'carol-pw' }))) ===
        'accepted',
      'carol accepted after the file changed',
    );
    writeFileSync(join(dir, 'acl'), `${ACL}user carol\ntopic write carol/#\n`);
    const carol = await connect(
      tls,
      tlsOpts({ clientId: 'carol-3', username: 'carol', password: 'carol-pw' }),
    );
    clients.push(carol);
    await eventually(async () => {
      await carol.publishAsync('carol/t', 'hello', { qos: 1 });
      return receiver.records.some((r) => r.device === 'carol-3');
    }, 'carol/t upstream once the ACL grants it');
    writeFileSync(join(dir, 'acl'), `${ACL}user carol\ntopik write carol/#\n`);
    await d.waitForLog((l) => l.msg === 'mqtt security file not reloaded: keeping the old one');
    const line = d.logs.find((l) => l.msg === 'mqtt security file not reloaded: keeping the old one');
    expect(String(line?.err)).toContain('acl:9: unknown keyword "topik"');
    await carol.publishAsync('carol/t', 'still granted', { qos: 1 });
    await eventually(
      () => receiver.records.filter((r) => r.device === 'carol-3').length >= 2,
      'the old ACL still grants carol/t',
    );
  });

  it('bounds the password checks running at once: past the bound CONNACK 3, never an acceptance', async () => {
    const before = metric(await d.metrics(), 'edgeferry_mqtt_auth_refused_total', 'reason="busy"');
    // Unknown users cost a full-price check each (0.1 s), so 80 at once pile up.
    const outcomes = await Promise.all(
      Array.from({ length: 80 }, (_, i) =>
        refusal(plain, { clientId: `guess-${i}`, username: `guess-${i}`, password: 'pw' }),
      ),
    );
    const busy = outcomes.filter((o) => o === 'connack 3').length;
    expect(outcomes.filter((o) => o !== 'connack 3' && o !== 'connack 4')).toEqual([]);
    expect(busy).toBeGreaterThan(0);
    expect(metric(await d.metrics(), 'edgeferry_mqtt_auth_refused_total', 'reason="busy"') - before).toBe(
      busy,
    );
  }, 60_000);

  const mosquitto = mosquittoClients();
  itWithPeer(
    mosquitto,
    'mosquitto_pub --cafile/--cert/--key publishes over TLS; with a wrong password it is refused',
    async () => {
      const run = (args: string[]) =>
        new Promise<{ code: number; stderr: string }>((resolve) => {
          execFile(
            mosquitto.paths.mosquitto_pub,
            ['-h', '127.0.0.1', '-p', String(tlsPort(d)), '-V', 'mqttv311', '--cafile', pki.caFile, ...args],
            { env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: dir }, timeout: 20_000 },
            (err, _out, stderr) =>
              resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
          );
        });
      const args = (s: string) => s.split(' ');
      const ok = await run([
        ...args(`--cert ${pki.clientCertFile} --key ${pki.clientKeyFile}`),
        ...args('-i mosq-cert -q 1 -t certs/mosq -m hello-over-tls'),
      ]);
      expect(ok.code, ok.stderr).toBe(0);
      const pw = await run(args('-u bob -P bob-pw -i mosq-pw -q 1 -t devices/bob/telemetry -m bob'));
      expect(pw.code, pw.stderr).toBe(0);
      const bad = await run(args('-u bob -P wrong -i mosq-bad -q 1 -t devices/bob/telemetry -m no'));
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/not authori[sz]ed|bad user name or password/i);
      await eventually(
        () =>
          receiver.records.some((r) => r.device === 'mosq-cert') &&
          receiver.records.some((r) => r.device === 'mosq-pw'),
        'mosquitto_pub records upstream',
      );
      expect(receiver.records.find((r) => r.device === 'mosq-cert')?.topic).toBe('certs/mosq');
      expect(receiver.records.some((r) => r.device === 'mosq-bad')).toBe(false);
    },
    30_000,
  );
});

describe('MQTT device security: start-up', () => {
  it('refuses to start on a missing certificate or a broken ACL, naming the file', async () => {
    const dir = tempDir('edgeferry-mqtt-bad-');
    const pki = generatePki(dir);
    writeFileSync(join(dir, 'acl'), 'user a\ntopic read a/#/b\n');
    const cases: [Record<string, unknown>, string][] = [
      [{ tls: { port: 0, certFile: join(dir, 'missing.crt'), keyFile: pki.serverKeyFile } }, 'missing.crt'],
      [{ tls: { port: 0, certFile: pki.serverCertFile, keyFile: pki.clientKeyFile } }, 'key values mismatch'],
      [{ aclFile: join(dir, 'acl') }, `${join(dir, 'acl')}:2: '#' must be a whole level`],
    ];
    for (const [mqttExtra, expected] of cases) {
      const config = baseConfig(dir, { mqtt: { host: '127.0.0.1', port: 0, ...mqttExtra } });
      const err = await startDaemon(dir, writeConfig(dir, config)).then(
        () => 'started',
        (e: Error) => e.message,
      );
      expect(err).toContain('start-up failed');
      expect(err).toContain(expected);
    }
  }, 60_000);
});
