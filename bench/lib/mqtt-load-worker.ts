// Worker-thread side of `prepareLoadInWorker`: prepare (connect), go (publish), reply.

import { parentPort } from 'node:worker_threads';
import { type PreparedLoad, prepareLoad, type WorkerReply, type WorkerRequest } from './mqtt-load.ts';

const port = parentPort;
if (!port) throw new Error('mqtt-load-worker must run in a worker thread');

let prepared: PreparedLoad | null = null;
const reply = (r: WorkerReply) => port.postMessage(r);

port.on('message', (msg: WorkerRequest) => {
  switch (msg.type) {
    case 'prepare':
      prepareLoad(msg.opts).then(
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
