// Every kustomization under deploy/ renders (`kubectl kustomize`), and every rendered object
// passes the strict offline validation of k8s-validate.ts; a fixture of wrong objects proves
// the validation rejects what it must.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { findExecutable } from '../interop/peer-tools.ts';
import { type K8sObject, validateObjects } from './k8s-validate.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const DEPLOY = join(REPO, 'deploy');

/** Every folder under deploy/ with a kustomization.yaml. */
function kustomizations(dir = DEPLOY): string[] {
  const here = readdirSync(dir, { withFileTypes: true });
  return [
    ...(here.some((e) => e.name === 'kustomization.yaml') ? [dir] : []),
    ...here.filter((e) => e.isDirectory()).flatMap((e) => kustomizations(join(dir, e.name))),
  ];
}

function objectsOf(yamlText: string, source: string): K8sObject[] {
  return parseAllDocuments(yamlText)
    .map((d) => d.toJS() as Record<string, unknown> | null)
    .filter((o): o is Record<string, unknown> => o !== null)
    .map((object) => ({ source, object }));
}

const kubectl = findExecutable('kubectl');
if (!kubectl)
  console.warn(
    'SKIPPED deploy render tests: kubectl is not installed (it comes with the machine image, not Debian)',
  );
const withKubectl = kubectl ? it : it.skip;

describe('deploy/ manifests', () => {
  const dirs = kustomizations();

  it('has the base, the monitoring kit, the four overlays and the KEDA example', () => {
    expect(dirs.map((d) => relative(DEPLOY, d)).sort()).toEqual([
      'base',
      'examples/keda-consumer',
      'monitoring',
      'overlays/k3s',
      'overlays/karmada-fleet',
      'overlays/kubeedge',
      'overlays/secure',
    ]);
  });

  withKubectl(
    `${kubectl ? '' : '[skipped: kubectl is not installed] '}every kustomization renders and every object passes strict validation`,
    async () => {
      const objects: K8sObject[] = [];
      for (const dir of dirs) {
        const r = spawnSync(kubectl!, ['kustomize', dir], { encoding: 'utf8' });
        expect(r.stderr, relative(REPO, dir)).toBe('');
        expect(r.status, relative(REPO, dir)).toBe(0);
        const rendered = objectsOf(r.stdout, relative(REPO, dir));
        expect(rendered.length, relative(REPO, dir)).toBeGreaterThan(0);
        objects.push(...rendered);
      }
      expect(await validateObjects(objects)).toEqual([]);
    },
  );

  it('the validation rejects misspelt fields (core and CRD objects) and wrong types', async () => {
    const file = join(REPO, 'test/deploy/fixtures/broken.yaml');
    const problems = await validateObjects(objectsOf(readFileSync(file, 'utf8'), 'broken.yaml'));
    const about = (name: string) => problems.filter((p) => p.includes(`/${name}:`));
    expect(about('broken-field').join('\n')).toMatch(/imagePullPolcy/);
    expect(about('broken-crd').join('\n')).toMatch(/placment/);
    expect(about('broken-podmonitor').join('\n')).toMatch(/scrapeEvery/);
    expect(about('broken-type').length).toBeGreaterThan(0);
  });

  it('an object of a kind without a schema is a problem, not a pass', async () => {
    const problems = await validateObjects([{ source: 'x', object: { apiVersion: 'v9', kind: 'Gizmo' } }]);
    expect(problems).toEqual(['x: Gizmo/?: no schema for v9 Gizmo']);
  });
});

describe('deploy/README.md', () => {
  const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
  const ds = parseAllDocuments(readFileSync(join(DEPLOY, 'base/daemonset.yaml'), 'utf8'))[0].toJS();
  const base = parseAllDocuments(readFileSync(join(DEPLOY, 'base/kustomization.yaml'), 'utf8'))[0].toJS();

  it('every kustomization it applies exists, and every path it names is in the repository', () => {
    const applied = [...readme.matchAll(/apply -k ([\w./-]+)/g)].map((m) => m[1]);
    expect(applied).toEqual(
      expect.arrayContaining(['deploy/overlays/k3s', 'deploy/monitoring', 'deploy/overlays/kubeedge']),
    );
    for (const dir of applied) expect(kustomizations(join(REPO, dir))[0], dir).toBe(join(REPO, dir));
    const named = [
      ...readme.matchAll(/`((?:\.\.\/)?[\w./-]+\/[\w.-]+\.(?:ya?ml|json|ts|md)|\.\.\/Dockerfile)`/g),
    ];
    // Absolute paths are inside the image or the pod, not in the repository.
    for (const [, path] of named.filter((m) => !m[1].startsWith('/'))) {
      const fromDeploy = join(DEPLOY, path);
      const fromRepo = join(REPO, path);
      expect(existsSync(fromDeploy) || existsSync(fromRepo), path).toBe(true);
    }
  });

  it('the K3s commands name the node label, namespace and DaemonSet the manifests use', () => {
    const [, key, value] = /kubectl label nodes --all ([\w./-]+)=(\S+)/.exec(readme)!;
    expect(ds.spec.template.spec.nodeSelector[key]).toBe(value);
    const [, ns, name] = /kubectl -n (\S+) rollout status daemonset\/(\S+)/.exec(readme)!;
    expect([ns, name]).toEqual([base.namespace, ds.metadata.name]);
  });
});
