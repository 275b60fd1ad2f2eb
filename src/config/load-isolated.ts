import { Worker } from 'node:worker_threads';
import { ConfigError } from '../core/errors.ts';
import type { Config } from './schema.ts';

type Reply = { ok: true; config: Config } | { ok: false; configError: boolean; message: string };

/**
 * `loadConfigFile` (or the embedded default when `path` is absent) in a worker thread, so the
 * YAML parser and the zod schemas (about 1.1 MB of JavaScript, 180 modules) are compiled and
 * kept in an isolate that is gone once the config is read, not in the daemon's for its whole
 * life. The config is plain data and crosses over by structured clone. Errors are the same
 * `ConfigError`s, with the same text, as loading in-process.
 */
export function loadConfigIsolated(path: string | undefined): Promise<Config> {
  // src/ runs as .ts (type stripping), dist/ as .js: the worker is the sibling of this file.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const worker = new Worker(new URL(`./config-worker${ext}`, import.meta.url), { workerData: path });
  return new Promise<Config>((resolve, reject) => {
    let replied = false;
    worker.once('message', (reply: Reply) => {
      replied = true;
      if (reply.ok) resolve(reply.config);
      else reject(reply.configError ? new ConfigError(reply.message) : new Error(reply.message));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!replied) reject(new Error(`configuration loader exited with code ${code} without a result`));
    });
  });
}
