// Interop with the Eclipse Mosquitto command-line clients (Debian mosquitto-clients): a peer
// implementation of MQTT 3.1.1 that nobody on this project wrote.

import { type ChildProcess, spawn } from 'node:child_process';
import mqtt from 'mqtt';
import { afterEach, describe, expect } from 'vitest';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { distinctSeqs, HttpReceiver } from '../helpers/http-receiver.ts';
import { allOf, itWithPeer, mosquittoClients, stdbuf } from './peer-tools.ts';

const mosquitto = mosquittoClients();
// mosquitto_sub's -d protocol log goes through stdio, block-buffered on a pipe: stdbuf -oL makes
// each line visible as it is printed.
const mosquittoLineBuffered = allOf(mosquitto, stdbuf());

interface Peer {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** True once the process has exited and its output is closed. */
  done: () => boolean;
  /** Resolves with the exit code; rejects (and kills the process) after `timeoutMs`. */
  exit(timeoutMs?: number): Promise<number | null>;
}

const running = new Set<ChildProcess>();

/**
 * Spawns a mosquitto client. HOME and XDG_CONFIG_HOME point at `dir`, so a developer's
 * ~/.config/mosquitto_pub (or _sub) options file cannot change what the test runs.
 */
function spawnPeer(
  name: 'mosquitto_pub' | 'mosquitto_sub',
  args: string[],
  dir: string,
  opts: { lineBuffered?: boolean } = {},
): Peer {
  const [cmd, argv] = opts.lineBuffered
    ? [mosquittoLineBuffered.paths.stdbuf, ['-oL', mosquitto.paths[name], ...args]]
    : [mosquitto.paths[name], args];
  const proc = spawn(cmd, argv, {
    cwd: dir,
    env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: dir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(proc);
  let out = '';
  let err = '';
  let done = false;
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (c: string) => {
    out += c;
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (c: string) => {
    err += c;
  });
  // A peer that exits before reading all of its stdin must not crash the test with EPIPE.
  proc.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code) => {
      done = true;
      running.delete(proc);
      resolve(code);
    });
  });
  const describeRun = () =>
    `${name} ${args.join(' ')}; stdout: ${out.slice(-2000)}; stderr: ${err.slice(-2000)}`;
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    done: () => done,
    exit(timeoutMs = 30_000) {
      return new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          proc.kill('SIGKILL');
          reject(new Error(`gave up waiting ${timeoutMs} ms for ${describeRun()}`));
        }, timeoutMs);
        exited.then(
          (code) => {
            clearTimeout(timer);
            resolve(code);
          },
          (e: Error) => {
            clearTimeout(timer);
            reject(new Error(`${describeRun()}: ${e.message}`));
          },
        );
      });
    },
  };
}

describe('mosquitto-clients interop', () => {
  let daemon: DaemonHandle | null = null;
  let receiver: HttpReceiver | null = null;
  afterEach(async () => {
    for (const p of running) p.kill('SIGKILL');
    running.clear();
    await daemon?.kill();
    await receiver?.stop();
    daemon = null;
    receiver = null;
  });

  async function startWithSink(dir: string): Promise<DaemonHandle> {
    receiver = new HttpReceiver();
    await receiver.start();
    const cfg = baseConfig(dir, {
      sinks: [
        { name: 'cloud', type: 'http', url: receiver.url, routes: ['sensors/#'], payloadEncoding: 'utf8' },
      ],
    });
    daemon = await startDaemon(dir, writeConfig(dir, cfg));
    return daemon;
  }

  itWithPeer(
    mosquitto,
    'mosquitto_pub -q 1 -l: 1 000 lines from stdin arrive upstream, all, in order',
    async () => {
      const N = 1_000; // far below 65 535: mosquitto_pub -l mishandles message-id wrap-around
      const dir = tempDir('edgeferry-interop-');
      const d = await startWithSink(dir);
      // Non-ASCII and spaces on purpose: the payload must come through byte for byte.
      const lines = Array.from({ length: N }, (_, i) => `line ${i} température=${(i % 40) - 10}°C`);

      const pub = spawnPeer(
        'mosquitto_pub',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(d.mqttPort),
          '-V',
          'mqttv311',
          '-i',
          'mosq-lines',
          '-q',
          '1',
          '-t',
          'sensors/x',
          '-l',
        ],
        dir,
      );
      pub.proc.stdin!.end(`${lines.join('\n')}\n`);
      expect(await pub.exit(), `mosquitto_pub stderr: ${pub.stderr()}`).toBe(0);

      await eventually(() => receiver!.records.length >= N, `${N} records at the receiver`);
      await eventually(async () => (await d.status()).sinks[0].backlog === 0, 'sink caught up');
      const recs = receiver!.records;
      expect(recs).toHaveLength(N);
      expect(recs.map((r) => r.payload)).toEqual(lines);
      expect(distinctSeqs(recs)).toHaveLength(N);
      for (let i = 1; i < recs.length; i++) expect(recs[i].seq).toBeGreaterThan(recs[i - 1].seq);
      for (const r of recs)
        expect(r).toMatchObject({ source: 'mqtt', device: 'mosq-lines', topic: 'sensors/x' });
      const status = await d.status();
      expect(status.journal.lastSeq).toBe(N);
      expect(status.sinks[0]).toMatchObject({ name: 'cloud', delivered: N, backlog: 0, deadLettered: 0 });
    },
  );

  itWithPeer(
    mosquittoLineBuffered,
    'mosquitto_sub -C 5 -v receives what an mqtt.js device publishes',
    async () => {
      // No sinks: the embedded broker still serves local subscribers, and keeps the records.
      const dir = tempDir('edgeferry-interop-');
      daemon = await startDaemon(dir, writeConfig(dir, baseConfig(dir)));
      const d = daemon;

      // -d prints mosquitto's own protocol log to stdout ("Client mosq-sub received SUBACK"): the
      // test publishes only once the subscription is acknowledged, with no guessing sleep.
      const sub = spawnPeer(
        'mosquitto_sub',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(d.mqttPort),
          '-V',
          'mqttv311',
          '-i',
          'mosq-sub',
          '-d',
          '-t',
          'sensors/#',
          '-C',
          '5',
          '-v',
        ],
        dir,
        { lineBuffered: true },
      );
      sub.proc.stdin!.end();
      const subExit = sub.exit(60_000);
      subExit.catch(() => {}); // awaited below; the subscription wait may fail first
      await eventually(
        () => sub.stdout().includes('Client mosq-sub received SUBACK') || sub.done(),
        'mosquitto_sub subscribed (or exited)',
      ).catch((e: Error) => {
        throw new Error(`${e.message}; stdout: ${sub.stdout()}; stderr: ${sub.stderr()}`);
      });
      expect(sub.stdout(), `mosquitto_sub exited early; stderr: ${sub.stderr()}`).toContain(
        'received SUBACK',
      );

      const published = [
        ['sensors/room1/temp', '21.5'],
        ['sensors/room1/hum', '40 %'],
        ['sensors/room2/temp', '19.0'],
        ['sensors/room2/co2', 'ppm=612'],
        ['sensors/roof/wind', 'NNE 12 km/h'],
      ];
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.mqttPort}`, {
        clientId: 'js-dev',
        protocolVersion: 4,
      });
      try {
        // One at a time: each is acknowledged (journaled) before the next, so the order is defined.
        for (const [topic, payload] of published) await client.publishAsync(topic, payload, { qos: 1 });
      } finally {
        await client.endAsync();
      }

      expect(await subExit, `mosquitto_sub stderr: ${sub.stderr()}`).toBe(0);
      const messages = sub
        .stdout()
        .split('\n')
        .filter((l) => l.length > 0 && !l.startsWith('Client mosq-sub ') && !l.startsWith('Subscribed (mid'));
      expect(messages).toEqual(published.map(([t, p]) => `${t} ${p}`));

      const status = await d.status();
      expect(status.journal.lastSeq).toBe(published.length);
      expect(status.sources[0].counters.received).toBe(published.length);
    },
  );

  itWithPeer(mosquitto, 'mosquitto_pub -q 2 -m: one message, delivered exactly once', async () => {
    const dir = tempDir('edgeferry-interop-');
    const d = await startWithSink(dir);
    const pub = spawnPeer(
      'mosquitto_pub',
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(d.mqttPort),
        '-V',
        'mqttv311',
        '-i',
        'mosq-q2',
        '-q',
        '2',
        '-t',
        'sensors/q2',
        '-m',
        'exactly once',
      ],
      dir,
    );
    pub.proc.stdin!.end();
    // mosquitto_pub exits after PUBCOMP: the whole QoS 2 flow is over on both sides.
    expect(await pub.exit(), `mosquitto_pub stderr: ${pub.stderr()}`).toBe(0);

    await eventually(
      async () => receiver!.records.length >= 1 && (await d.status()).sinks[0].backlog === 0,
      'the record delivered and the sink caught up',
    );
    const status = await d.status();
    expect(status.journal.lastSeq).toBe(1); // journaled once: no duplicate from PUBREL
    expect(status.sinks[0]).toMatchObject({ delivered: 1, backlog: 0 });
    expect(receiver!.records).toHaveLength(1);
    expect(receiver!.records[0]).toMatchObject({
      device: 'mosq-q2',
      topic: 'sensors/q2',
      payload: 'exactly once',
    });

    // After a clean stop (drain, journal closed) still one: nothing was left to send twice.
    expect(await d.stop()).toBe(0);
    expect(receiver!.records).toHaveLength(1);
  });
});
