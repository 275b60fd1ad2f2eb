// A POST abandoned at its deadline (the dispatcher's abort) ends its connection with a TCP RST
// instead of a FIN. undici closes an aborted request's socket with destroy(), a graceful close:
// the kernel still sends every byte of the request already in the socket's buffer, so over a
// slow link the upstream receives and accepts the abandoned batch after all, and then its retry
// too (the link-fault test saw 875 of 1 000 records arrive twice at 512 kbit/s). A reset
// discards the unsent bytes, so a metered 4G link does not carry a batch twice. Plain TCP only:
// a TLS socket's handle cannot be reset from Node.

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { buildConnector } from 'undici';

type Connector = buildConnector.connector;

/** undici's message for the socket of a request its handler aborted (client-h1.js). */
const ABORTED = 'aborted';

function resetOnAbort(socket: Socket): void {
  const destroy = socket.destroy;
  socket.destroy = function (this: Socket, err?: Error) {
    if (
      err !== undefined &&
      (err as { code?: string }).code === 'UND_ERR_INFO' &&
      err.message === ABORTED &&
      !this.destroyed &&
      !this.connecting &&
      (this as Partial<TLSSocket>).encrypted !== true
    ) {
      this.resetAndDestroy();
      return this;
    }
    return destroy.call(this, err);
  } as Socket['destroy'];
}

/** Wraps undici's connector so each plain TCP socket it makes resets when its request is aborted. */
export function resettingConnector(base: Connector): Connector {
  return (opts, cb) =>
    base(opts, (...args) => {
      if (args[1]) resetOnAbort(args[1]);
      cb(...args);
    });
}
