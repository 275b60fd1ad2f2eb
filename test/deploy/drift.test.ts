// deploy/ and the Dockerfile cannot drift from the daemon: the ports, paths and probe endpoints
// in the manifests match the config the pods run (deploy/base/edgeferry.yaml) and the daemon's
// defaults, and every metric, label and label value that the alert rules, the dashboard and the
// KEDA example name is one a running daemon's /metrics really has. Reads the source YAML, so it
// runs without kubectl.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { defaultConfig, loadConfigFile } from '../../src/config/load.ts';
import {
  baseConfig,
  type DaemonHandle,
  eventually,
  startDaemon,
  tempDir,
  writeConfig,
} from '../helpers/daemon.ts';
import { parseDockerfile } from './dockerfile-tree.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const read = (p: string) => readFileSync(join(REPO, p), 'utf8');
// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
const yaml = (p: string): any => parse(read(p));

const config = loadConfigFile(join(REPO, 'deploy/base/edgeferry.yaml'), {});
const defaults = defaultConfig({});
const ds = yaml('deploy/base/daemonset.yaml');
const pod = ds.spec.template.spec;
const container = pod.containers[0];
const portsByName = new Map<string, { containerPort: number; protocol: string; hostPort?: number }>(
  container.ports.map((p: { name: string }) => [p.name, p]),
);

/** Every expression in the alert rules, the dashboard and the KEDA example, with where it is. */
function expressions(): { where: string; expr: string }[] {
  const rules = yaml('deploy/monitoring/prometheusrule.yaml').spec.groups.flatMap(
    (g: { rules: { alert: string; expr: string }[] }) =>
      g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
  );
  const dashboard = JSON.parse(read('deploy/monitoring/grafana-dashboard.json')).panels.flatMap(
    (p: { title: string; targets: { expr: string }[] }) =>
      p.targets.map((t) => ({ where: `panel ${p.title}`, expr: t.expr })),
  );
  const keda = yaml('deploy/examples/keda-consumer/scaledobject.yaml').spec.triggers.map(
    (t: { metadata: { query: string } }) => ({ where: 'KEDA trigger', expr: t.metadata.query }),
  );
  return [...rules, ...dashboard, ...keda];
}

describe('deploy/ matches the daemon', () => {
  it('the pods config is valid and listens on the default ports', () => {
    for (const section of ['mqtt', 'coap', 'admin', 'grpc'] as const) {
      expect(config[section].port, section).toBe(defaults[section].port);
      expect(config[section].enabled, section).toBe(true);
    }
  });

  it('container ports, host ports, Service, NetworkPolicy and image ports are the configured ones', () => {
    expect(portsByName.get('mqtt')).toMatchObject({ containerPort: config.mqtt.port, protocol: 'TCP' });
    expect(portsByName.get('mqtt')?.hostPort).toBe(config.mqtt.port);
    expect(portsByName.get('coap')).toMatchObject({ containerPort: config.coap.port, protocol: 'UDP' });
    expect(portsByName.get('coap')?.hostPort).toBe(config.coap.port);
    expect(portsByName.get('grpc')?.containerPort).toBe(config.grpc.port);
    expect(portsByName.get('admin')?.containerPort).toBe(config.admin.port);

    const svc = yaml('deploy/base/service.yaml').spec;
    for (const p of svc.ports) expect(portsByName.get(p.targetPort)?.containerPort, p.name).toBe(p.port);
    expect(svc.ports.find((p: { targetPort: string }) => p.targetPort === 'grpc').appProtocol).toBe('grpc');

    const listening = new Set([...portsByName.values()].map((p) => `${p.containerPort}/${p.protocol}`));
    const np = yaml('deploy/base/networkpolicy.yaml').spec;
    for (const rule of np.ingress)
      for (const p of rule.ports)
        expect(listening, `NetworkPolicy ingress ${p.port}`).toContain(`${p.port}/${p.protocol}`);

    const exposed = parseDockerfile(read('Dockerfile'))
      .filter((i) => i.keyword === 'EXPOSE')
      .flatMap((i) => i.args.split(/\s+/))
      .map((p) => (p.includes('/') ? p.toUpperCase() : `${p}/TCP`));
    expect(new Set(exposed)).toEqual(listening);
  });

  it('probes, metrics scrape, config mount and journal volume point where the daemon serves and reads', () => {
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(container.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    // The startup probe outlasts the wait for the previous pod's journal lock.
    expect(
      container.startupProbe.periodSeconds * container.startupProbe.failureThreshold * 1000,
    ).toBeGreaterThan(config.journal.lockWaitMs);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.shutdown.drainTimeoutMs);

    const endpoint = yaml('deploy/monitoring/podmonitor.yaml').spec.podMetricsEndpoints[0];
    expect([endpoint.port, endpoint.path]).toEqual(['admin', '/metrics']);

    const configArg = container.args[container.args.indexOf('--config') + 1];
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === 'config');
    const files = yaml('deploy/base/kustomization.yaml').configMapGenerator[0].files as string[];
    expect(files).toContain(`${configArg.slice(mount.mountPath.length + 1)}=edgeferry.yaml`);
    expect(configArg.startsWith(`${mount.mountPath}/`)).toBe(true);

    const journal = container.volumeMounts.find((m: { name: string }) => m.name === 'journal');
    const volume = pod.volumes.find((v: { name: string }) => v.name === 'journal');
    expect(volume.hostPath.path).toBe(journal.mountPath);
    expect(config.journal.path.startsWith(`${journal.mountPath}/`)).toBe(true);
    expect(container.env).toContainEqual({
      name: 'NODE_NAME',
      valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } },
    });
  });

  describe('with a running daemon', () => {
    let daemon: DaemonHandle;
    let metrics: string;
    beforeAll(async () => {
      const dir = tempDir();
      // A sink whose upstream is not there, so the per-sink series exist (KEDA's example sink).
      const sinks = [{ name: 'cluster-ingest', type: 'http', url: 'http://127.0.0.1:9/ingest' }];
      daemon = await startDaemon(dir, writeConfig(dir, baseConfig(dir, { sinks })));
      // One record it cannot deliver: the backlog's series (oldest undelivered age) appear.
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${daemon.mqttPort}`, { reconnectPeriod: 0 });
      await client.publishAsync('plant/line1/temp', '21.5', { qos: 1 });
      await client.endAsync();
      await eventually(
        async () => (await daemon.metrics()).includes('edgeferry_sink_oldest_undelivered_age_seconds{'),
        'the backlog in /metrics',
      );
      metrics = await daemon.metrics();
    });
    afterAll(async () => {
      await daemon?.stop();
    });

    it('the probe paths and the scrape path answer 200 on the admin port', async () => {
      const endpoint = yaml('deploy/monitoring/podmonitor.yaml').spec.podMetricsEndpoints[0];
      const paths = [container.startupProbe, container.livenessProbe, container.readinessProbe].map(
        (p) => p.httpGet.path,
      );
      for (const path of [...paths, endpoint.path]) {
        const res = await fetch(`http://127.0.0.1:${daemon.adminPort}${path}`);
        await res.arrayBuffer();
        expect(res.status, path).toBe(200);
      }
    });

    it('every metric, label and label value the alerts, dashboard and KEDA example use is exported', () => {
      // name -> label -> values seen
      const series = new Map<string, Map<string, Set<string>>>();
      for (const line of metrics.split('\n')) {
        const m = /^(\w+)(?:\{(.*)\})? /.exec(line);
        if (!m || line.startsWith('#')) continue;
        const labels = series.get(m[1]) ?? new Map<string, Set<string>>();
        series.set(m[1], labels);
        for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
          if (!labels.has(k)) labels.set(k, new Set());
          labels.get(k)!.add(v);
        }
      }
      // Labels that Prometheus adds to every series: the PodMonitor's relabelings and the scrape.
      const relabelled = yaml(
        'deploy/monitoring/podmonitor.yaml',
      ).spec.podMetricsEndpoints[0].relabelings.map((r: { targetLabel: string }) => r.targetLabel);
      expect(relabelled).toEqual(['job', 'node']);
      const scrape = new Set([...relabelled, 'instance', 'pod', 'namespace', 'container', 'endpoint']);

      const checked: string[] = [];
      for (const { where, expr } of expressions()) {
        const names = [...expr.matchAll(/\bedgeferry_\w+/g)].map((m) => m[0]);
        expect(names.length + (expr.includes('up{job="edgeferry"}') ? 1 : 0), where).toBeGreaterThan(0);
        for (const name of names) {
          expect(series.has(name), `${where}: ${name} is not in /metrics`).toBe(true);
          checked.push(name);
        }
        // Matchers right after a metric name: each label exists and some value of it matches.
        for (const m of expr.matchAll(/\b(edgeferry_\w+)\{([^}]*)\}/g)) {
          for (const [, label, op, value] of m[2].matchAll(/(\w+)\s*(=~|!=|=)\s*"([^"]*)"/g)) {
            const values = series.get(m[1])?.get(label);
            expect(values, `${where}: ${m[1]} has no label ${label}`).toBeDefined();
            if (op === '!=') continue;
            const re = new RegExp(`^(?:${value})$`);
            for (const alt of op === '=~' ? value.split('|') : [value])
              expect(
                [...values!].some((v) => v === alt || re.test(v)),
                `${where}: ${m[1]}{${label}="${alt}"}`,
              ).toBe(true);
          }
        }
        // Labels grouped by must be on the series or added by the scrape.
        for (const g of expr.matchAll(/\bby \(([^)]*)\)/g))
          for (const label of g[1].split(',').map((s) => s.trim())) {
            const onSome = names.some((n) => series.get(n)?.has(label));
            expect(onSome || scrape.has(label), `${where}: by (${label})`).toBe(true);
          }
      }
      // The alerts the issue asks for (down, backoff, stalled, backlog growing, oldest record,
      // journal budget, dropped, dead-lettered) are all there.
      const alerts = expressions()
        .filter((e) => e.where.startsWith('alert '))
        .map((e) => e.expr)
        .join('\n');
      expect(alerts).toContain('up{job="edgeferry"}');
      expect(alerts).toMatch(/state=~"backoff/);
      expect(alerts).toMatch(/state="stalled"/);
      for (const name of [
        'edgeferry_sink_state',
        'edgeferry_sink_backlog_records',
        'edgeferry_sink_oldest_undelivered_age_seconds',
        'edgeferry_journal_bytes',
        'edgeferry_journal_max_bytes',
        'edgeferry_journal_dropped_total',
        'edgeferry_sink_dead_lettered_total',
      ])
        expect(alerts, name).toContain(name);
      expect(checked.length).toBeGreaterThan(10);
    });
  });
});
