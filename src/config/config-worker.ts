// Runs in the worker thread started by load-isolated.ts: loads and validates the configuration,
// posts the plain result back, and ends with its thread.

import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from '../core/errors.ts';
import { defaultConfig, loadConfigFile } from './load.ts';

const path = workerData as string | undefined;
try {
  const config = path ? loadConfigFile(path) : defaultConfig();
  parentPort!.postMessage({ ok: true, config });
} catch (err) {
  parentPort!.postMessage({
    ok: false,
    configError: err instanceof ConfigError,
    message: (err as Error).message,
  });
}
