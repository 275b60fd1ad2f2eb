// Builds the file tree a Dockerfile's final stage would hold, without a Docker engine (none runs
// on these machines): each stage gets a folder standing for its root filesystem, COPY copies
// from the build context (filtered by .dockerignore) or from another stage's folder, RUN runs
// with `sh -c` in the stage's WORKDIR. Only the instructions edgeferry's Dockerfile uses are
// understood; any other throws, so the file cannot grow a step this model silently skips.
// The host's node and npm stand in for the build image's (the same major version, checked).

import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

export interface Stage {
  name: string;
  image: string;
  root: string;
  workdir: string;
  env: Record<string, string>;
  user?: string;
  entrypoint: string[];
  cmd: string[];
  expose: string[];
  steps: Instruction[];
}

/** Instructions with continuation lines joined; comments and blank lines dropped. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) return;
    if (pending === '') start = i + 1;
    if (line.startsWith('#')) return; // a comment inside a continued instruction
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = pending + line;
    pending = '';
    const m = /^(\S+)\s*(.*)$/.exec(full)!;
    out.push({ keyword: m[1].toUpperCase(), args: m[2], line: start });
  });
  return out;
}

/** The stages in file order, their instructions not yet run. */
export function splitStages(instructions: Instruction[], workRoot: string): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      // --platform only picks which variant of the image runs, the same files either way here.
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile:${ins.line}: FROM ${ins.args}: not understood`);
      const name = m[2] ?? `stage${stages.length}`;
      stages.push({
        name,
        image: m[1],
        root: join(workRoot, name),
        workdir: '/',
        env: {},
        entrypoint: [],
        cmd: [],
        expose: [],
        steps: [],
      });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile:${ins.line}: ${ins.keyword} before FROM`);
      stage.steps.push(ins);
    }
  }
  return stages;
}

/** `.dockerignore` as Docker reads it, for the plain patterns used here (`*`, paths, `!path`). */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).replace(/\/+$/, '');
      if (pattern !== '*' && /[*?[\]]/.test(pattern))
        throw new Error(`.dockerignore: pattern ${l} is beyond this model (plain paths and * only)`);
      return { negate, pattern };
    });
  // Excluded when the last rule that matches the path or one of its parents excludes it.
  return (path) => {
    let excluded = false;
    for (const r of rules) {
      // `*` matches every top-level name, so with the parent rule every path.
      if (r.pattern === '*' || path === r.pattern || path.startsWith(`${r.pattern}/`)) excluded = !r.negate;
    }
    return excluded;
  };
}

function words(args: string): string[] {
  return args.split(/\s+/).filter((w) => w !== '');
}

function jsonArray(ins: Instruction): string[] {
  const v = JSON.parse(ins.args) as unknown;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw new Error(`Dockerfile:${ins.line}: ${ins.keyword} must be the JSON (exec) form`);
  return v;
}

/** `KEY=value` pairs, values optionally double-quoted. */
function pairs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/(\S+?)=("(?:[^"\\]|\\.)*"|\S+)/g))
    out[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
  return out;
}

function inStage(stage: Stage, path: string): string {
  return join(stage.root, isAbsolute(path) ? path : join(stage.workdir, path));
}

function run(cmd: string, cwd: string, env: NodeJS.ProcessEnv, line: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', cmd], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => {
      output += c;
    });
    child.stderr.on('data', (c) => {
      output += c;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new RunError(`Dockerfile:${line}: RUN ${cmd} exited ${code}:\n${output.slice(-3000)}`, output),
        );
    });
  });
}

/** A RUN step that failed; `output` is its stdout and stderr. */
export class RunError extends Error {
  readonly output: string;
  constructor(message: string, output: string) {
    super(message);
    this.output = output;
  }
}

export interface BuildOptions {
  context: string;
  workRoot: string;
  /** Added to RUN's environment (e.g. npm_config_prefer_offline). */
  runEnv?: Record<string, string>;
}

/**
 * Builds every stage (independent ones at the same time, as BuildKit does) and returns them,
 * the last being the image. A stage runs its RUN steps only when its base is a `node:` image:
 * distroless has no shell, so a RUN there is an error, as it would be in Docker.
 */
export async function buildStages(dockerfile: string, opts: BuildOptions): Promise<Stage[]> {
  const stages = splitStages(parseDockerfile(readFileSync(dockerfile, 'utf8')), opts.workRoot);
  const ignoreFile = join(opts.context, '.dockerignore');
  const ignored = existsSync(ignoreFile) ? dockerignore(readFileSync(ignoreFile, 'utf8')) : () => false;
  const done = new Map<string, Promise<void>>();
  const build = async (stage: Stage): Promise<void> => {
    mkdirSync(stage.root, { recursive: true });
    for (const ins of stage.steps) {
      switch (ins.keyword) {
        case 'WORKDIR':
          stage.workdir = isAbsolute(ins.args) ? ins.args : join(stage.workdir, ins.args);
          mkdirSync(inStage(stage, '.'), { recursive: true });
          break;
        case 'COPY': {
          const w = words(ins.args);
          const flags = w.filter((x) => x.startsWith('--'));
          const paths = w.filter((x) => !x.startsWith('--'));
          const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
          const dest = paths.pop()!;
          let base = opts.context;
          if (from !== undefined) {
            const src = stages.find((s) => s.name === from);
            if (!src) throw new Error(`Dockerfile:${ins.line}: COPY --from=${from}: no such stage`);
            await done.get(from);
            base = src.root;
          }
          for (const p of paths) {
            const source = join(base, p);
            if (from === undefined && ignored(p))
              throw new Error(`Dockerfile:${ins.line}: COPY ${p}: excluded by .dockerignore`);
            const intoDir = dest.endsWith('/') || paths.length > 1;
            const target =
              intoDir && !statSync(source).isDirectory()
                ? join(inStage(stage, dest), p.split('/').at(-1)!)
                : inStage(stage, dest);
            mkdirSync(dirname(target), { recursive: true });
            cpSync(source, target, {
              recursive: true,
              filter: (s) => from !== undefined || !ignored(relative(opts.context, s)),
            });
          }
          break;
        }
        case 'RUN':
          if (!stage.image.startsWith('node:'))
            throw new Error(`Dockerfile:${ins.line}: RUN in ${stage.image}, which has no shell`);
          await run(
            ins.args,
            inStage(stage, '.'),
            { ...process.env, ...stage.env, ...opts.runEnv },
            ins.line,
          );
          break;
        case 'ENV':
          Object.assign(stage.env, pairs(ins.args));
          break;
        case 'USER':
          stage.user = ins.args;
          break;
        case 'EXPOSE':
          stage.expose.push(...words(ins.args));
          break;
        case 'ENTRYPOINT':
          stage.entrypoint = jsonArray(ins);
          break;
        case 'CMD':
          stage.cmd = jsonArray(ins);
          break;
        case 'LABEL':
          break;
        default:
          throw new Error(`Dockerfile:${ins.line}: ${ins.keyword} is not modelled by ${import.meta.url}`);
      }
    }
  };
  for (const s of stages) done.set(s.name, build(s));
  await Promise.all(done.values());
  return stages;
}
