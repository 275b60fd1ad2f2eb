// Strict offline validation of Kubernetes objects (kubeconform cannot be installed here), in two
// passes whose faults differ:
//  1. tsc: every object becomes a typed object literal in one in-memory TypeScript file, typed
//     with kubernetes-types (Kubernetes 1.30), the @kubernetes-models CRD packages' interfaces
//     (PodMonitor, PrometheusRule, ScaledObject) or karmada-types.ts. TypeScript's excess
//     property check on fresh literals rejects an unknown or misspelt field at any depth, which
//     kubernetes-models' JSON schemas do not (they allow additional properties).
//  2. kubernetes-models' validate(): the JSON schemas' formats, patterns and required fields.

import { join } from 'node:path';
import ts from 'typescript';

export interface K8sObject {
  /** Where it came from, for messages: a rendered overlay or a file. */
  source: string;
  object: Record<string, unknown>;
}

interface Kind {
  /** `import type { <name> } from '<module>'`, and the type used is `<name>`. */
  module: string;
  name: string;
  /** kubernetes-models' class, for validate(). */
  model?: string;
}

const KINDS: Record<string, Kind> = {
  'v1/Namespace': {
    module: 'kubernetes-types/core/v1',
    name: 'Namespace',
    model: 'kubernetes-models/v1/Namespace',
  },
  'v1/ConfigMap': {
    module: 'kubernetes-types/core/v1',
    name: 'ConfigMap',
    model: 'kubernetes-models/v1/ConfigMap',
  },
  'v1/Service': {
    module: 'kubernetes-types/core/v1',
    name: 'Service',
    model: 'kubernetes-models/v1/Service',
  },
  'v1/ServiceAccount': {
    module: 'kubernetes-types/core/v1',
    name: 'ServiceAccount',
    model: 'kubernetes-models/v1/ServiceAccount',
  },
  'apps/v1/DaemonSet': {
    module: 'kubernetes-types/apps/v1',
    name: 'DaemonSet',
    model: 'kubernetes-models/apps/v1/DaemonSet',
  },
  'apps/v1/Deployment': {
    module: 'kubernetes-types/apps/v1',
    name: 'Deployment',
    model: 'kubernetes-models/apps/v1/Deployment',
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    module: 'kubernetes-types/networking/v1',
    name: 'NetworkPolicy',
    model: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy',
  },
  'scheduling.k8s.io/v1/PriorityClass': {
    module: 'kubernetes-types/scheduling/v1',
    name: 'PriorityClass',
    model: 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass',
  },
  'monitoring.coreos.com/v1/PodMonitor': {
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor',
    name: 'IPodMonitor',
    model: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor',
  },
  'monitoring.coreos.com/v1/PrometheusRule': {
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
    name: 'IPrometheusRule',
    model: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
  },
  'keda.sh/v1alpha1/ScaledObject': {
    module: '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject',
    name: 'IScaledObject',
    model: '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject',
  },
  'policy.karmada.io/v1alpha1/PropagationPolicy': { module: './karmada-types.ts', name: 'PropagationPolicy' },
  'policy.karmada.io/v1alpha1/ClusterPropagationPolicy': {
    module: './karmada-types.ts',
    name: 'ClusterPropagationPolicy',
  },
};

const HERE = new URL('.', import.meta.url).pathname;

function describe(o: K8sObject): string {
  const meta = (o.object.metadata ?? {}) as { name?: string };
  return `${o.source}: ${String(o.object.kind)}/${meta.name ?? '?'}`;
}

function kindOf(o: K8sObject): Kind | undefined {
  return KINDS[`${String(o.object.apiVersion)}/${String(o.object.kind)}`];
}

/** Problems found by tsc against the typed literals, one line each, naming the object. */
function typeCheck(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const known = objects.filter((o) => kindOf(o));
  const imports = new Map<string, Set<string>>();
  for (const o of known) {
    const k = kindOf(o)!;
    if (!imports.has(k.module)) imports.set(k.module, new Set());
    imports.get(k.module)!.add(k.name);
  }
  const lines = [...imports].map(([m, names]) => `import type { ${[...names].join(', ')} } from '${m}';`);
  const owners: { first: number; last: number; object: K8sObject }[] = [];
  known.forEach((o, i) => {
    const body = JSON.stringify(o.object, null, 1).split('\n');
    owners.push({ first: lines.length, last: lines.length + body.length - 1, object: o });
    body[0] = `export const o${i}: ${kindOf(o)!.name} = ${body[0]}`;
    body[body.length - 1] += ';';
    lines.push(...body);
  });

  // In memory, but in this folder, so the imports resolve from the repository's node_modules.
  const file = join(HERE, '__rendered_objects__.ts');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    // Bundler: kubernetes-types has no exports map and no .js files beside its .d.ts.
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const text = lines.join('\n');
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, text, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (d.file?.fileName !== file || d.start === undefined) {
      problems.push(`tsc: ${message}`);
      continue;
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const owner = owners.find((x) => line >= x.first && line <= x.last);
    const at = lines[line].trim();
    problems.push(`${owner ? describe(owner.object) : 'imports'}: ${message} (at ${at})`);
  }
  return problems;
}

/** Problems kubernetes-models' JSON schemas find, one per object. */
async function schemaCheck(objects: K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objects) {
    const k = kindOf(o);
    if (!k?.model) continue;
    const mod = (await import(k.model)) as Record<string, new (data: unknown) => { validate(): void }>;
    const Model = mod[k.name.replace(/^I/, '')];
    try {
      new Model(o.object).validate();
    } catch (err) {
      problems.push(`${describe(o)}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** Every problem with `objects`; an object of a kind not listed above is itself a problem. */
export async function validateObjects(objects: K8sObject[]): Promise<string[]> {
  const unknown = objects
    .filter((o) => !kindOf(o))
    .map((o) => `${describe(o)}: no schema for ${String(o.object.apiVersion)} ${String(o.object.kind)}`);
  return [...unknown, ...typeCheck(objects), ...(await schemaCheck(objects))];
}
