// A server listening, as a promise; its bound address for logs and /v1/status.

import type { Server } from 'node:net';

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function address(server: Server | null | undefined): { host?: string; port?: number } {
  const a = server?.address();
  return a && typeof a === 'object' ? { host: a.address, port: a.port } : {};
}
