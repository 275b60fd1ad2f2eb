// The container's memory limit from fixture cgroup trees: the reader takes a root path, so each
// case is a small directory tree in the shapes cgroup v1 and v2 have on real machines.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCgroupLimit } from '../../src/memory/cgroup.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** The machine's RAM as the reader is told it: limits at or above it are none. */
const RAM = 16 * GiB;
/** What cgroup v1 writes for "no limit". */
const V1_UNLIMITED = '9223372036854771712';

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'edgeferry-cgroup-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

describe('cgroup v2', () => {
  it('reads memory.max of the cgroup named on the 0:: line', () => {
    const root = tree({
      'proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
      'sys/fs/cgroup/cgroup.controllers': 'cpu memory\n',
      'sys/fs/cgroup/kubepods/pod1/ctr/memory.max': `${160 * MiB}\n`,
    });
    expect(readCgroupLimit(root, RAM)).toEqual({
      bytes: 160 * MiB,
      version: 'v2',
      file: join(root, 'sys/fs/cgroup/kubepods/pod1/ctr/memory.max'),
    });
  });

  it('"max" is no limit, and an ancestor with a limit still applies (a pod limit over its containers)', () => {
    const root = tree({
      'proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/kubepods/pod1/ctr/memory.max': 'max\n',
      'sys/fs/cgroup/kubepods/pod1/memory.max': `${256 * MiB}\n`,
      'sys/fs/cgroup/kubepods/memory.max': 'max\n',
    });
    expect(readCgroupLimit(root, RAM)?.bytes).toBe(256 * MiB);
  });

  it('"max" all the way up is none', () => {
    const root = tree({
      'proc/self/cgroup': '0::/user.slice/session-1.scope\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/user.slice/session-1.scope/memory.max': 'max\n',
      'sys/fs/cgroup/user.slice/memory.max': 'max\n',
    });
    expect(readCgroupLimit(root, RAM)).toBeNull();
  });

  it("inside a cgroup namespace (0::/ while the mount is the container's own cgroup)", () => {
    const root = tree({
      'proc/self/cgroup': '0::/\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/memory.max': `${512 * MiB}\n`,
    });
    expect(readCgroupLimit(root, RAM)?.bytes).toBe(512 * MiB);
  });
});

describe('cgroup v1', () => {
  it('reads memory.limit_in_bytes of the memory controller line', () => {
    const root = tree({
      'proc/self/cgroup': '9:name=systemd:/\n8:pids:/\n4:memory:/docker/abc\n1:cpu,cpuacct:/\n0::/\n',
      'sys/fs/cgroup/memory/memory.limit_in_bytes': V1_UNLIMITED,
      'sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': `${160 * MiB}\n`,
    });
    expect(readCgroupLimit(root, RAM)).toEqual({
      bytes: 160 * MiB,
      version: 'v1',
      file: join(root, 'sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes'),
    });
  });

  it('finds the limit at the mount root when the runtime bind-mounted the container cgroup there', () => {
    // /proc/self/cgroup names the host path, which does not exist under the container's mount.
    const root = tree({
      'proc/self/cgroup': '4:memory:/kubepods/burstable/pod1/ctr\n',
      'sys/fs/cgroup/memory/memory.limit_in_bytes': `${384 * MiB}\n`,
    });
    expect(readCgroupLimit(root, RAM)?.bytes).toBe(384 * MiB);
  });

  it('controllers mounted together (memory among others on one line) count', () => {
    const root = tree({
      'proc/self/cgroup': '3:cpuset,memory:/lxc/c1\n',
      'sys/fs/cgroup/memory/lxc/c1/memory.limit_in_bytes': `${200 * MiB}`,
    });
    expect(readCgroupLimit(root, RAM)?.bytes).toBe(200 * MiB);
  });

  it('2^63 rounded to a page, or anything as large as the machine, is no limit', () => {
    const unlimited = tree({
      'proc/self/cgroup': '4:memory:/a\n',
      'sys/fs/cgroup/memory/a/memory.limit_in_bytes': V1_UNLIMITED,
      'sys/fs/cgroup/memory/memory.limit_in_bytes': V1_UNLIMITED,
    });
    expect(readCgroupLimit(unlimited, RAM)).toBeNull();
    const aboveRam = tree({
      'proc/self/cgroup': '4:memory:/a\n',
      'sys/fs/cgroup/memory/a/memory.limit_in_bytes': `${32 * GiB}`,
    });
    expect(readCgroupLimit(aboveRam, RAM)).toBeNull();
  });
});

describe('missing or unreadable', () => {
  it('no /proc/self/cgroup (not Linux) is none', () => {
    expect(readCgroupLimit(tree({ 'etc/hostname': 'x' }), RAM)).toBeNull();
  });

  it('no memory controller and no unified hierarchy is none', () => {
    const root = tree({ 'proc/self/cgroup': '8:pids:/\n1:cpu:/\n' });
    expect(readCgroupLimit(root, RAM)).toBeNull();
  });

  it('a 0:: line without a v2 mount (hybrid v1 machine) does not count, the v1 memory line does', () => {
    const root = tree({
      'proc/self/cgroup': '4:memory:/a\n0::/\n',
      'sys/fs/cgroup/memory/a/memory.limit_in_bytes': `${300 * MiB}`,
      'sys/fs/cgroup/memory.max': `${100 * MiB}`,
    });
    expect(readCgroupLimit(root, RAM)?.bytes).toBe(300 * MiB);
  });

  it('a limit file with garbage in it is none', () => {
    const root = tree({
      'proc/self/cgroup': '0::/x\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/x/memory.max': 'lots\n',
    });
    expect(readCgroupLimit(root, RAM)).toBeNull();
  });
});
