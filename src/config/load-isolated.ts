import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deserialize } from 'node:v8';
import { ConfigError } from '../core/errors.ts';
import type { Config } from './schema.ts';

type Reply = { ok: true; config: Config } | { ok: false; configError: boolean; message: string };

/**
 * `loadConfigFile` (or the embedded default when `path` is absent) in a short-lived child
 * process, so the YAML parser and the zod schemas (1.1 MB of the 3 MB of JavaScript the daemon
 * loaded, 180 of its 480 files) are compiled, and their garbage made, in a process that is gone
 * once the config is read. A worker thread saved less: its isolate goes, but the thread's malloc
 * arena and the code it touched stay in the daemon (idle RSS 80.7 MB with a worker, 76.3 MB
 * with a process, bench/tools/idle-rss.ts; the process takes about 0.1 s). The config is plain
 * data, passed back by V8 serialization; errors are the same `ConfigError`s, with the same
 * text, as loading in-process.
 */
export function loadConfigIsolated(path: string | undefined): Promise<Config> {
  // src/ runs as .ts (type stripping), dist/ as .js: the loader is the sibling of this file.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const loader = fileURLToPath(new URL(`./config-loader-process${ext}`, import.meta.url));
  return new Promise<Config>((resolve, reject) => {
    execFile(
      process.execPath,
      // Not the daemon's own flags: --inspect would collide on its port, --cpu-prof would write a
      // second profile. Node >= 22.18 strips the types of src/ without one.
      [loader, path ?? ''],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(`configuration loader failed: ${err.message}${stderr.length ? `\n${stderr}` : ''}`),
          );
          return;
        }
        let reply: Reply;
        try {
          reply = deserialize(stdout) as Reply;
        } catch (e) {
          reject(new Error(`configuration loader answered unreadably: ${(e as Error).message}`));
          return;
        }
        if (reply.ok) resolve(reply.config);
        else reject(reply.configError ? new ConfigError(reply.message) : new Error(reply.message));
      },
    );
  });
}
