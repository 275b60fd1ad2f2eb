// The `modbus` scenario's PLC simulator alone (bench/lib/modbus-sim.ts, its own process), polled
// by modbus-serial clients from this process the way the poller reads it: one TCP connection per
// device, FC 3 over every register, one request at a time, every `intervalMs`. Prints requests
// answered, round-trip percentiles and the simulator's CPU, and checks that values move.
//
//   node bench/tools/modbus-sim-check.ts [devices=100] [registers=100] [intervalMs=100] [seconds=5]

import { setTimeout as sleep } from 'node:timers/promises';
import modbusSerial from 'modbus-serial';
import { LatencyRecorder } from '../lib/consumer.ts';
import { startModbusSim } from '../lib/modbus-sim.ts';
import { installExitHandlers, killAllChildren } from '../lib/proc.ts';

const [devices = 100, registers = 100, intervalMs = 100, seconds = 5] = process.argv
  .slice(2)
  .map((a) => Number(a));

// A CommonJS module whose exports are the client class, with itself as `default` too.
const ModbusRTU = modbusSerial.default;

installExitHandlers();
const sim = await startModbusSim({ devices, registers });
process.stdout.write(
  `simulator pid ${sim.pid}: ${devices} devices on ports ${sim.ports[0]}..${sim.ports.at(-1)}\n`,
);

const clients = await Promise.all(
  sim.ports.map(async (port) => {
    const c = new ModbusRTU();
    await c.connectTCP(sim.host, { port });
    c.setID(1);
    c.setTimeout(1000);
    return c;
  }),
);

const rtt = new LatencyRecorder();
let ok = 0;
let failed = 0;
let skipped = 0;
let unchanged = 0;
const last: number[] = new Array(devices).fill(-1);
const sampler = sim.sampler();
const before = await sim.stats();
sampler.begin();
const t0 = performance.now();
const end = t0 + seconds * 1000;
await Promise.all(
  clients.map(async (c, d) => {
    // Spread the devices over the interval, as a poller starting them one by one would.
    let due = t0 + (d * intervalMs) / devices;
    let busy = false;
    while (due < end) {
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      due += intervalMs;
      if (busy) {
        skipped++;
        continue;
      }
      busy = true;
      const s = performance.now();
      try {
        const r = await c.readHoldingRegisters(0, registers);
        rtt.record(performance.now() - s);
        ok++;
        if (r.data[0] === last[d]) unchanged++;
        last[d] = r.data[0];
      } catch {
        failed++;
      }
      busy = false;
    }
  }),
);
const wallS = (performance.now() - t0) / 1000;
const win = sampler.end();
const after = await sim.stats();
const served = after.served.reduce((a, b) => a + b, 0) - before.served.reduce((a, b) => a + b, 0);
const f = (n: number) => n.toFixed(2);
process.stdout.write(
  `${ok} reads ok, ${failed} failed, ${skipped} skipped in ${wallS.toFixed(1)} s = ${(ok / wallS).toFixed(0)} reads/s; ` +
    `simulator served ${served} (${(served / wallS).toFixed(0)}/s), exceptions ${after.exceptions}, connections ${after.open}\n` +
    `round trip ms p50 ${f(rtt.percentile(50))} p99 ${f(rtt.percentile(99))} max ${f(rtt.max)}; ` +
    `simulator CPU ${win.cpuPct.toFixed(1)} % of a core, RSS ${win.peakRssMb.toFixed(0)} MB; ` +
    `client CPU (this process) ${((process.cpuUsage().user + process.cpuUsage().system) / 10 / (wallS * 1000)).toFixed(0)} % over the whole run; ` +
    `reads whose first value had not moved: ${unchanged}\n`,
);
for (const c of clients) c.close(() => {});
await sim.stop();
killAllChildren();
process.exit(0);
