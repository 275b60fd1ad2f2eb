import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { formatPath } from './config/load.ts';
import { loadConfigIsolated } from './config/load-isolated.ts';
import type { Config } from './config/schema.ts';
import { ConfigError } from './core/errors.ts';
import { Gateway } from './main.ts';
import { mib } from './memory/budget.ts';
import { type MemoryPlan, planMemory } from './memory/plan.ts';
import { createLogger } from './observability/logger.ts';

const USAGE = `usage: edgeferry <command> [options]

commands:
  run [--config FILE]       run the gateway (without --config: the embedded default:
                            MQTT on 1883, CoAP on 5683/udp, admin HTTP on 8080,
                            gRPC API on 50051,
                            journal in ./data, no sinks)
  check-config FILE         validate a configuration file and exit
  passwd FILE USER          add USER to an MQTT credentials file or change its
                            password (read without echo; from stdin when not a TTY)
  version                   print the version

The config file may also be given as EDGEFERRY_CONFIG.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** The config, or exit 2 with every problem printed. Read by a short-lived child process: see load-isolated.ts. */
async function loadOrExit(path: string | undefined): Promise<Config> {
  try {
    return await loadConfigIsolated(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`edgeferry: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/**
 * The memory budget, or exit 2 when settings cannot fit the limit. With `memory.limit` in the
 * file the schema already refused them; a limit found in the cgroup is only known here.
 */
function planOrExit(config: Config, configPath: string | undefined): MemoryPlan {
  const plan = planMemory(config);
  if (plan.problems.length > 0) {
    const where = configPath ?? '(embedded default)';
    const limit = plan.budget.limit ?? 0;
    const lines = plan.problems.map((p) => `  ${where}: ${formatPath(p.path)}: ${p.message}`);
    process.stderr.write(
      `edgeferry: invalid configuration for the container's memory limit ${mib(limit)} (${plan.cgroupFile}):\n${lines.join('\n')}\n`,
    );
    process.exit(2);
  }
  return plan;
}

async function run(configPath: string | undefined): Promise<void> {
  const config = await loadOrExit(configPath);
  const plan = planOrExit(config, configPath);
  const log = createLogger(config.log.level, config.node.id);
  log.info(
    { version: version(), config: configPath ?? '(embedded default)', pid: process.pid },
    'edgeferry starting',
  );
  const gateway = new Gateway(config, log, plan);
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'signal received');
    gateway.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await gateway.start();
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'start-up failed');
    await gateway.stop().catch(() => {});
    process.exit(1);
  }
}

function main(argv: string[]): void {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(command || values.help ? 0 : 2);
  }
  switch (command) {
    case 'run':
      void run(values.config ?? process.env.EDGEFERRY_CONFIG);
      return;
    case 'check-config': {
      const file = rest[0] ?? values.config;
      if (!file) {
        process.stderr.write('edgeferry: check-config needs a FILE\n');
        process.exit(2);
      }
      loadOrExit(file).then(
        (cfg) =>
          process.stdout.write(
            `${file}: ok (${cfg.sinks.length} sink${cfg.sinks.length === 1 ? '' : 's'})\n`,
          ),
        (err) => {
          process.stderr.write(`edgeferry: check-config failed: ${(err as Error).message}\n`);
          process.exit(2);
        },
      );
      return;
    }
    case 'passwd':
      import('./sources/mqtt-broker/passwd-command.ts')
        .then((m) => m.passwdCommand(rest[0], rest[1]))
        .catch((err) => {
          process.stderr.write(`edgeferry: passwd: ${(err as Error).message}\n`);
          process.exit(2);
        });
      return;
    case 'version':
      process.stdout.write(`${version()}\n`);
      return;
    default:
      process.stderr.write(`edgeferry: unknown command '${command}'\n${USAGE}\n`);
      process.exit(2);
  }
}

try {
  main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`edgeferry: ${(err as Error).message}\n`);
  process.exit(2);
}
