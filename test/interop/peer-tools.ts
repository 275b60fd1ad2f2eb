// Finds the peer tools the interop tests talk to: programs nobody on this project wrote, from
// Debian packages. Policy: a missing tool under CI is a test failure naming the package; outside
// CI the test is skipped, with the reason in its title and a warning line (never a silent skip).

import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { it } from 'vitest';

export interface PeerTool {
  /** What the tests need, for messages: `mosquitto_pub, mosquitto_sub`. */
  what: string;
  /** The Debian package that provides it. */
  debPackage: string;
  /** Absolute paths of the executables, by name (only when available). */
  paths: Record<string, string>;
  available: boolean;
}

/** CI is on when `CI` is set to anything but an empty string, `0` or `false`. */
export function isCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.CI?.trim().toLowerCase();
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/** The absolute path of an executable found on PATH (or given absolute), or null. */
export function findExecutable(name: string, pathVar = process.env.PATH ?? ''): string | null {
  const candidates = isAbsolute(name)
    ? [name]
    : pathVar
        .split(delimiter)
        .filter((d) => d.length > 0)
        .map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return null;
}

export function executables(what: string, debPackage: string, names: string[]): PeerTool {
  const paths: Record<string, string> = {};
  for (const n of names) {
    const p = findExecutable(n);
    if (p) paths[n] = p;
  }
  return { what, debPackage, paths, available: names.every((n) => paths[n] !== undefined) };
}

/** `mosquitto_pub` and `mosquitto_sub` (Debian `mosquitto-clients`). */
export function mosquittoClients(): PeerTool {
  return executables('mosquitto_pub, mosquitto_sub', 'mosquitto-clients', ['mosquitto_pub', 'mosquitto_sub']);
}

/** `coap-client-notls` (Debian `libcoap3-bin`). */
export function coapClient(): PeerTool {
  return executables('coap-client-notls', 'libcoap3-bin', ['coap-client-notls']);
}

/** `coap-server-notls` (Debian `libcoap3-bin`): libcoap's example server, observable `/time`. */
export function coapServer(): PeerTool {
  return executables('coap-server-notls', 'libcoap3-bin', ['coap-server-notls']);
}

/** `coap-server-openssl` (Debian `libcoap3-bin`): the same server with DTLS (PSK with -k). */
export function coapServerDtls(): PeerTool {
  return executables('coap-server-openssl', 'libcoap3-bin', ['coap-server-openssl']);
}

/** `stdbuf` (Debian `coreutils`): line-buffers a peer's stdout when it writes to a pipe. */
export function stdbuf(): PeerTool {
  return executables('stdbuf', 'coreutils', ['stdbuf']);
}

/** Several tools needed together: available only when all are. */
export function allOf(...tools: PeerTool[]): PeerTool {
  const missing = tools.filter((t) => !t.available);
  const report = missing.length > 0 ? missing : tools;
  return {
    what: report.map((t) => t.what).join(', '),
    debPackage: report.map((t) => t.debPackage).join(' '),
    paths: Object.assign({}, ...tools.map((t) => t.paths)),
    available: missing.length === 0,
  };
}

export const SYSTEM_PYTHON = '/usr/bin/python3';

/** pymodbus importable by the system python, `/usr/bin/python3` (Debian `python3-pymodbus`). */
export function pymodbus(): PeerTool {
  const what = `pymodbus under ${SYSTEM_PYTHON}`;
  const debPackage = 'python3-pymodbus';
  if (!findExecutable(SYSTEM_PYTHON)) return { what, debPackage, paths: {}, available: false };
  const r = spawnSync(SYSTEM_PYTHON, ['-c', 'import pymodbus'], { stdio: 'ignore', timeout: 30_000 });
  const available = r.status === 0;
  return { what, debPackage, paths: available ? { python3: SYSTEM_PYTHON } : {}, available };
}

export function missingMessage(tool: PeerTool): string {
  const noun = tool.debPackage.includes(' ') ? 'packages' : 'package';
  return `${tool.what} not found: install the Debian ${noun} ${tool.debPackage} (apt-get install ${tool.debPackage})`;
}

/**
 * Declares a test that needs `tool`. Available: a plain `it`. Missing under CI: a test that fails
 * with a message naming the package. Missing outside CI: a skipped test whose title says why,
 * plus a console.warn line.
 */
export function itWithPeer(
  tool: PeerTool,
  title: string,
  fn: () => Promise<void>,
  timeoutMs?: number,
  ci: boolean = isCi(),
): void {
  if (tool.available) {
    it(title, fn, timeoutMs);
  } else if (ci) {
    it(title, () => {
      throw new Error(`${missingMessage(tool)}; CI requires the interop peer tools (see .ci/run)`);
    });
  } else {
    console.warn(`edgeferry interop: skipping "${title}": ${missingMessage(tool)}`);
    it.skip(`${title} (skipped: ${tool.debPackage} not installed)`, fn);
  }
}

export const MOSQUITTO_BROKER = '/usr/sbin/mosquitto';

/** The mosquitto broker itself (Debian `mosquitto`), at its Debian path or on PATH. */
export function mosquittoBroker(): PeerTool {
  const p = findExecutable(MOSQUITTO_BROKER) ?? findExecutable('mosquitto');
  return {
    what: 'mosquitto',
    debPackage: 'mosquitto',
    paths: p ? { mosquitto: p } : {},
    available: p !== null,
  };
}

/** `ip` (netns, veth, routes) and `tc` (Debian `iproute2`): the link-fault tests' namespaces. */
export function iproute2(): PeerTool {
  return executables('ip, tc', 'iproute2', ['ip', 'tc']);
}

/** `iptables` (Debian `iptables`): DROP and REJECT rules inside a test's own namespace. */
export function iptables(): PeerTool {
  return executables('iptables', 'iptables', ['iptables']);
}
