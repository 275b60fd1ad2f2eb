// Turns YAML (or any plain value) plus the environment into a validated `Config`, reporting every
// problem at once, one line each, so an operator fixes the file in one pass.

import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type * as z from 'zod';
import { ConfigError } from '../core/errors.ts';
import { describeValue } from './fields.ts';
import { type Config, configSchema } from './schema.ts';

/** Environment variables that replace a config value; the orchestrator knows these better than the file. */
const ENV_OVERRIDES = [
  // Kubernetes injects the node name through the downward API.
  { variable: 'NODE_NAME', section: 'node', key: 'id' },
  { variable: 'EDGEFERRY_LOG_LEVEL', section: 'log', key: 'level' },
] as const;

interface Problem {
  path: PropertyKey[];
  message: string;
  /** Set when the bad value came from this environment variable, not from the file. */
  variable?: string;
}

type Validation = { ok: true; config: Config } | { ok: false; problems: Problem[] };

/** Validates `raw` (parsed YAML), applies environment overrides and fills defaults. Throws `ConfigError`. */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  const result = validate(raw, env);
  if (result.ok) return result.config;
  throw new ConfigError(report(result.problems.map((p) => `${formatPath(p.path)}: ${describeProblem(p)}`)));
}

/** The configuration used when no file is given: MQTT on 1883, admin on 8080, gRPC API on 50051, journal in ./data, no sinks. */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfig({}, env);
}

/** Reads and validates a YAML config file. Problems carry `file:line:col` where the file has the field. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new ConfigError(`configuration file not found: ${path}`);
    throw new ConfigError(`cannot read configuration file ${path}: ${e.message}`);
  }

  const lines = new LineCounter();
  // prettyErrors off: positions are added below in the same `file:line:col` form as validation problems.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      ['invalid YAML:', ...doc.errors.map((e) => `  ${path}:${lineCol(lines, e.pos[0])}: ${e.message}`)].join(
        '\n',
      ),
    );
  }

  const result = validate(doc.toJS(), env);
  if (result.ok) return result.config;
  const located = result.problems.map((p) => ({
    ...p,
    offset: p.variable ? undefined : findOffset(doc.contents, p.path),
  }));
  // File order reads better than schema order when fixing the file top to bottom; sort is stable.
  located.sort((a, b) => (a.offset ?? Number.POSITIVE_INFINITY) - (b.offset ?? Number.POSITIVE_INFINITY));
  throw new ConfigError(
    report(
      located.map((p) => {
        const where = p.offset === undefined ? path : `${path}:${lineCol(lines, p.offset)}`;
        return `${where}: ${formatPath(p.path)}: ${describeProblem(p)}`;
      }),
    ),
  );
}

function validate(raw: unknown, env: NodeJS.ProcessEnv): Validation {
  const { value, overridden } = applyEnv(raw, env);
  const result = configSchema.safeParse(value, { error: genericMessage, reportInput: true });
  if (result.success) return { ok: true, config: result.data };

  const problems: Problem[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push({ path: [...issue.path, key], message: 'unknown field' });
      continue;
    }
    problems.push({
      path: issue.path,
      message: issue.message,
      variable: overridden.get(issue.path.join('.')),
    });
  }
  return { ok: false, problems };
}

/** Sets each override into a copy of `raw`; the caller's object is left as it was. */
function applyEnv(raw: unknown, env: NodeJS.ProcessEnv): { value: unknown; overridden: Map<string, string> } {
  const overridden = new Map<string, string>();
  // Not a mapping: leave it for the schema to report; overrides have nowhere to go.
  if (raw !== null && raw !== undefined && !isPlainObject(raw)) return { value: raw, overridden };

  const value: Record<string, unknown> = { ...(raw ?? {}) };
  for (const { variable, section, key } of ENV_OVERRIDES) {
    // An empty variable (`NODE_NAME=`) is treated as unset rather than as an invalid empty id.
    const v = env[variable];
    if (v === undefined || v === '') continue;
    const current = value[section];
    if (current === null || current === undefined) value[section] = { [key]: v };
    else if (isPlainObject(current)) value[section] = { ...current, [key]: v };
    else continue; // the schema reports the section itself
    overridden.set(`${section}.${key}`, variable);
  }
  return { value, overridden };
}

/** Messages for issues the schema does not word itself, in YAML terms ("mapping", "list"). */
function genericMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'required';
      return `expected ${TYPE_NAMES[iss.expected] ?? iss.expected} (got ${describeValue(iss.input)})`;
    case 'invalid_value':
      if (iss.values.length === 1)
        return `expected ${String(iss.values[0])} (got ${describeValue(iss.input)})`;
      return `expected one of ${iss.values.join('|')} (got ${describeValue(iss.input)})`;
    default:
      return undefined;
  }
}

const TYPE_NAMES: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
};

function describeProblem(p: Problem): string {
  return p.variable ? `${p.message} (from ${p.variable})` : p.message;
}

function report(lines: string[]): string {
  return ['invalid configuration:', ...lines.map((l) => `  ${l}`)].join('\n');
}

/** `sinks[0].headers.Authorization`; keys that would read ambiguously are quoted: `headers["a.b"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(String(seg))) out += out ? `.${String(seg)}` : String(seg);
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/**
 * Source offset of the deepest node along `path`: the value itself, or for a field the file lacks
 * (a missing required key) the mapping that should hold it.
 */
function findOffset(root: unknown, path: readonly PropertyKey[]): number | undefined {
  let node = root as Node | null;
  let offset = node?.range?.[0];
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
      if (!pair) break;
      // The key, not the value: an unknown or empty field still has a key to point at.
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value as Node | null;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg] as Node | null;
      offset = node?.range?.[0] ?? offset;
    } else break;
  }
  return offset;
}

function lineCol(lines: LineCounter, offset: number): string {
  const { line, col } = lines.linePos(offset);
  return `${line}:${col}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
