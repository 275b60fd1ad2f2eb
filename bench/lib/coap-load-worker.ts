// Worker-thread side of `prepareCoapLoadInWorker`: prepare (bind, connect, probe), go, reply.

import { parentPort } from 'node:worker_threads';
import {
  type CoapWorkerReply,
  type CoapWorkerRequest,
  type PreparedCoapLoad,
  prepareCoapLoad,
} from './coap-load.ts';

const port = parentPort;
if (!port) throw new Error('coap-load-worker must run in a worker thread');

let prepared: PreparedCoapLoad | null = null;
const reply = (r: CoapWorkerReply) => port.postMessage(r);

port.on('message', (msg: CoapWorkerRequest) => {
  switch (msg.type) {
    case 'prepare':
      prepareCoapLoad(msg.opts).then(
        (p) => {
          prepared = p;
          reply({ type: 'prepared' });
        },
        (err: Error) => reply({ type: 'error', message: err.message }),
      );
      return;
    case 'go':
      if (!prepared) {
        reply({ type: 'error', message: 'go before prepare' });
        return;
      }
      prepared.go().then(
        (result) => reply({ type: 'done', result }),
        (err: Error) => reply({ type: 'error', message: err.message }),
      );
      return;
    case 'abort':
      prepared?.abort();
      port.close();
      return;
  }
});
