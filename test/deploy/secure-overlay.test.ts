// The `secure` overlay renders into pods whose config (its own ConfigMap) turns device security
// on, and whose ports, Service, NetworkPolicy and Secret mounts agree with that config: MQTT only
// over TLS on 8883, no CoAP, every file the config names under a mounted Secret.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { findExecutable } from '../interop/peer-tools.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const kubectl = findExecutable('kubectl');
if (!kubectl) console.warn('SKIPPED the secure overlay test: kubectl is not installed');
const withKubectl = kubectl ? it : it.skip;

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked field by field
type Obj = any;

withKubectl(
  `${kubectl ? '' : '[skipped: kubectl is not installed] '}the secure overlay: TLS-only MQTT, credentials, ACL and admin token from mounted Secrets, ports agree`,
  () => {
    const r = spawnSync(kubectl!, ['kustomize', `${REPO}deploy/overlays/secure`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const objects: Obj[] = parseAllDocuments(r.stdout).map((d) => d.toJS());
    const find = (kind: string) => objects.find((o) => o.kind === kind);

    const cm = find('ConfigMap');
    const config = parseConfig(parseAllDocuments(cm.data['config.yaml'])[0].toJS(), {});
    expect(config.mqtt.port).toBe(false);
    expect(config.coap.enabled).toBe(false);
    const tls = config.mqtt.tls;
    if (!tls) throw new Error('mqtt.tls is not set');

    const pod = find('DaemonSet').spec.template.spec;
    const container = pod.containers[0];
    const listening = container.ports.map((p: Obj) => `${p.containerPort}/${p.protocol}`).sort();
    expect(listening).toEqual(
      [`${config.admin.port}/TCP`, `${config.grpc.port}/TCP`, `${tls.port}/TCP`].sort(),
    );
    expect(container.ports.find((p: Obj) => p.containerPort === tls.port).hostPort).toBe(tls.port);

    // Every file the config reads lies under a mount of a required Secret.
    const secretMounts = container.volumeMounts.filter((m: Obj) => {
      const v = pod.volumes.find((x: Obj) => x.name === m.name);
      return v?.secret && v.secret.optional !== true;
    });
    const files = [
      tls.certFile,
      tls.keyFile,
      config.mqtt.passwordFile,
      config.mqtt.aclFile,
      config.admin.tokenFile,
    ];
    for (const f of files) {
      expect(f, 'a file the config names').toBeDefined();
      expect(
        secretMounts.some((m: Obj) => (f as string).startsWith(`${m.mountPath}/`)),
        `${f} under a mounted Secret`,
      ).toBe(true);
    }

    // deploy/README.md's commands create the Secrets with exactly the names and keys mounted.
    const readme = readFileSync(`${REPO}deploy/README.md`, 'utf8');
    const fromFiles = [...readme.matchAll(/--from-file=([\w.-]+)/g)].map((m) => m[1]);
    const authVolume = pod.volumes.find((v: Obj) => v.secret?.secretName === 'edgeferry-device-auth');
    expect(readme).toContain('create secret generic edgeferry-device-auth');
    expect(readme).toContain('create secret tls edgeferry-tls');
    const authMount = container.volumeMounts.find((m: Obj) => m.name === authVolume.name).mountPath;
    for (const f of files.filter((x) => (x as string).startsWith(`${authMount}/`)))
      expect(fromFiles, `README creates ${f}`).toContain((f as string).slice(authMount.length + 1));

    const svcPorts = find('Service')
      .spec.ports.map((p: Obj) => p.port)
      .sort();
    expect(svcPorts).toEqual([config.grpc.port, tls.port].sort());
    const ingress = find('NetworkPolicy').spec.ingress.flatMap((rule: Obj) =>
      rule.ports.map((p: Obj) => `${p.port}/${p.protocol}`),
    );
    for (const p of ingress) expect(listening, `NetworkPolicy ingress ${p}`).toContain(p);
    expect(ingress).not.toContain('1883/TCP');
  },
);
