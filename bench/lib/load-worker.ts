// A load generator in a worker thread, so it has an event loop of its own: the parent asks it to
// prepare (connect, warm up), then to go, and gets the result; abort ends it. One protocol for
// every generator (mqtt-load.ts, coap-load.ts): a generator's worker file is one `serveLoad` call.

import { parentPort, Worker } from 'node:worker_threads';

export interface PreparedRun<R> {
  go(): Promise<R>;
  abort(): void;
}

type Request<O> = { type: 'prepare'; opts: O } | { type: 'go' } | { type: 'abort' };
type Reply<R> = { type: 'prepared' } | { type: 'done'; result: R } | { type: 'error'; message: string };

/** The worker side: answers the parent's requests with `prepare(opts)` and its `go()`. */
export function serveLoad<O, R>(prepare: (opts: O) => Promise<PreparedRun<R>>): void {
  const port = parentPort;
  if (!port) throw new Error('a load worker must run in a worker thread');
  let prepared: PreparedRun<R> | null = null;
  const reply = (r: Reply<R>) => port.postMessage(r);
  const fail = (err: Error) => reply({ type: 'error', message: err.message });
  port.on('message', (msg: Request<O>) => {
    switch (msg.type) {
      case 'prepare':
        prepare(msg.opts).then((p) => {
          prepared = p;
          reply({ type: 'prepared' });
        }, fail);
        return;
      case 'go':
        if (!prepared) {
          reply({ type: 'error', message: 'go before prepare' });
          return;
        }
        prepared.go().then((result) => reply({ type: 'done', result }), fail);
        return;
      case 'abort':
        prepared?.abort();
        port.close();
        return;
    }
  });
}

/** The parent side: the generator in `workerUrl` (a `serveLoad` module), prepared with `opts`. */
export function prepareInWorker<O, R>(workerUrl: URL, opts: O, what: string): Promise<PreparedRun<R>> {
  const worker = new Worker(workerUrl);
  let settle: ((reply: Reply<R>) => void) | null = null;
  let exitError: Error | null = null;
  const next = () =>
    new Promise<Reply<R>>((resolve) => {
      if (exitError) resolve({ type: 'error', message: exitError.message });
      else settle = resolve;
    });
  const deliver = (reply: Reply<R>) => {
    const s = settle;
    settle = null;
    s?.(reply);
  };
  worker.on('message', deliver);
  worker.on('error', (err) => {
    exitError = err;
    deliver({ type: 'error', message: err.message });
  });
  worker.on('exit', (code) => {
    exitError ??= new Error(`${what} worker exited (${code})`);
    deliver({ type: 'error', message: exitError.message });
  });
  const stop = () => void worker.terminate();
  const send = (r: Request<O>) => worker.postMessage(r);
  const prepared = next();
  send({ type: 'prepare', opts });
  return prepared.then((reply) => {
    if (reply.type !== 'prepared') {
      stop();
      throw new Error(reply.type === 'error' ? reply.message : `unexpected ${reply.type}`);
    }
    return {
      abort() {
        send({ type: 'abort' });
        stop();
      },
      async go() {
        const done = next();
        send({ type: 'go' });
        const r = await done;
        stop();
        if (r.type !== 'done') throw new Error(r.type === 'error' ? r.message : `unexpected ${r.type}`);
        return r.result;
      },
    };
  });
}
