// Baseline: a bare node-coap server (the `coap` package edgeferry's CoAP server is built on) on a
// UDP port, run as its own process. It answers 2.04 Changed to every POST and stores nothing:
// no journal, no sink. node-coap's own defaults stay as they are (piggybacked replies, its
// response cache for duplicate CONs, a NON 2.04 to a NON request). Usage:
// node bench/baselines/coap-server.ts PORT. Prints one JSON line when listening; exits on SIGTERM
// or when its stdin closes (the bench process is gone).

import { createServer } from 'coap';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: coap-server.ts PORT\n');
  process.exit(2);
}

const server = createServer({ type: 'udp4' }, (req, res) => {
  res.code = req.method === 'POST' ? '2.04' : '4.05';
  res.end();
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`);
});

let stopping = false;
const shutdown = () => {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 1000).unref();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();
