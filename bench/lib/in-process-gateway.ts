// The gateway in the tool's own process, for the tools that look inside it (heap sampling, stage
// timing): MQTT on a free loopback port, one HTTP sink to `sinkUrl`, nothing else listening.

import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import { Gateway } from '../../src/main.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { freePort } from './proc.ts';

export async function startInProcessGateway(opts: {
  dir: string;
  sinkUrl: string;
  lingerMs: number;
  journal?: Record<string, unknown>;
  name: string;
}): Promise<{ gateway: Gateway; mqttPort: number }> {
  const mqttPort = await freePort();
  const config = parseConfig({
    journal: { path: join(opts.dir, 'journal'), ...opts.journal },
    mqtt: { host: '127.0.0.1', port: mqttPort },
    admin: { enabled: false },
    grpc: { enabled: false },
    coap: { enabled: false },
    log: { level: 'warn' },
    sinks: [
      {
        name: 'up',
        type: 'http',
        url: opts.sinkUrl,
        batch: { maxRecords: 1000, maxBytes: '1MiB', lingerMs: opts.lingerMs },
        retry: { minMs: 100, maxMs: '1s' },
      },
    ],
  });
  const gateway = new Gateway(config, createLogger('warn', opts.name));
  await gateway.start();
  return { gateway, mqttPort };
}
