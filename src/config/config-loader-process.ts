// The child process started by load-isolated.ts: loads and validates the configuration, writes
// the result to stdout in V8's serialization format (structured clone: exactly what it holds),
// and exits.

import { serialize } from 'node:v8';
import { ConfigError } from '../core/errors.ts';
import { defaultConfig, loadConfigFile } from './load.ts';

const path = process.argv[2] || undefined;
let reply: unknown;
try {
  reply = { ok: true, config: path ? loadConfigFile(path) : defaultConfig() };
} catch (err) {
  reply = { ok: false, configError: err instanceof ConfigError, message: (err as Error).message };
}
process.stdout.write(serialize(reply));
