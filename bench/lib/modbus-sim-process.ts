// Child-process side of `startModbusSim` (modbus-sim.ts): argv[2] is the JSON of its options.
// Reports the ports once every device listens, answers stats requests over the IPC channel, and
// exits on SIGTERM or when the channel closes (the bench process is gone).

import { type ModbusSimOptions, ModbusSimServer, type SimReply, type SimRequest } from './modbus-sim.ts';

const send = (r: SimReply) => process.send?.(r);

if (!process.send) {
  process.stderr.write('modbus-sim-process.ts runs as a child of the bench (fork with IPC)\n');
  process.exit(2);
}

const opts = JSON.parse(process.argv[2] ?? '{}') as ModbusSimOptions;
const sim = new ModbusSimServer(opts);

process.on('message', (m: SimRequest) => {
  if (m.type === 'stats') send({ type: 'stats', stats: sim.stats() });
});
const shutdown = () => {
  sim.close();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.on('disconnect', shutdown);

sim.start().then(
  (ports) => send({ type: 'listening', ports }),
  (err: Error) => {
    send({ type: 'error', message: err.message });
    process.exit(1);
  },
);
