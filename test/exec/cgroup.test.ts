// Cgroup layout detection from mountinfo (v2 unified, v1, hybrid, none) and the per-run
// cgroup on this host's real hierarchy: limits written, events read, removed afterwards.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectCgroups, hostCgroups, keyedValue, parseMountinfo, removeShareGroup, removeStaleRuns, RunCgroup, threadCgroupDirs } from '../../lib/exec/cgroup.js';

const V2 = `24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw`;
const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;

test('cgroup2 on /sys/fs/cgroup: v2, one directory for all three controllers', () => {
  assert.equal(detectCgroups(V2), { version: 2, memoryParent: '/sys/fs/cgroup/virt-offload', pidsParent: '/sys/fs/cgroup/virt-offload', cpuParent: '/sys/fs/cgroup/virt-offload' });
});

test('tmpfs on /sys/fs/cgroup with v1 controllers (and an empty unified mount): v1', () => {
  assert.equal(detectCgroups(HYBRID), {
    version: 1,
    memoryParent: '/sys/fs/cgroup/memory/virt-offload',
    pidsParent: '/sys/fs/cgroup/pids/virt-offload',
    cpuParent: '/sys/fs/cgroup/cpu,cpuacct/virt-offload',
  });
});

test('a missing controller means no layout (the caller refuses to run)', () => {
  assert.is(detectCgroups(HYBRID.split('\n').filter((l) => !l.includes(' rw,pids')).join('\n')), undefined);
  assert.is(detectCgroups(HYBRID.split('\n').filter((l) => !l.includes(' rw,cpu,cpuacct')).join('\n')), undefined);
  assert.is(detectCgroups(''), undefined);
});

test('co-mounted v1 controllers and escaped mount points are read right', () => {
  const text = `40 31 0:40 / /sys/fs/cgroup/mem\\040and\\040pids rw - cgroup cgroup rw,memory,pids\n41 31 0:41 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n42 31 0:42 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu`;
  assert.equal(parseMountinfo(text)[0]?.point, '/sys/fs/cgroup/mem and pids');
  const layout = detectCgroups(text);
  assert.is(layout?.memoryParent, '/sys/fs/cgroup/mem and pids/virt-offload');
  assert.is(layout?.pidsParent, layout?.memoryParent);
  // cpuacct is not cpu: the option names are compared whole.
  assert.is(layout?.cpuParent, '/sys/fs/cgroup/cpu/virt-offload');
});

test('keyed event files', () => {
  assert.is(keyedValue('oom_kill_disable 0\nunder_oom 0\noom_kill 3\n', 'oom_kill'), 3);
  assert.is(keyedValue('max 12\n', 'max'), 12);
  assert.is(keyedValue('low 0\nhigh 0\n', 'oom_kill'), 0);
});

test('a run cgroup on this host: limits written, a process joins, is killed, the directories go', async () => {
  const layout = hostCgroups();
  assert.ok(layout, 'this host has memory and pids controllers');
  const group = RunCgroup.create(layout!, { memoryBytes: 64 << 20, pids: 7, cpuPercent: 100 });
  try {
    assert.is(readFileSync(join(group.pidsDir, 'pids.max'), 'utf8').trim(), '7');
    const memFile = layout!.version === 2 ? 'memory.max' : 'memory.limit_in_bytes';
    assert.is(readFileSync(join(group.memoryDir, memFile), 'utf8').trim(), String(64 << 20));
    const cpu = (file: string) => readFileSync(join(group.cpuDir, file), 'utf8').trim();
    // All runs together weigh what nice 10 gives a process, against the rest of the host.
    const parentWeight = readFileSync(join(layout!.cpuParent, layout!.version === 2 ? 'cpu.weight' : 'cpu.shares'), 'utf8').trim();
    assert.is(parentWeight, layout!.version === 2 ? '10' : '102');
    if (layout!.version === 2) assert.is(cpu('cpu.max'), '100000 100000');
    else assert.equal([cpu('cpu.cfs_quota_us'), cpu('cpu.cfs_period_us')], ['100000', '100000']);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = new Promise((r) => child.on('exit', (_code, signal) => r(signal)));
    group.add(child.pid!);
    assert.equal(group.pids(), [child.pid]);
    group.killAll();
    assert.is(await exited, 'SIGKILL');
    assert.equal(group.events(), { oomKills: 0, pidsMaxHits: 0 });
  } finally {
    await group.removeWhenEmpty();
  }
  for (const dir of group.dirs) assert.not.ok(existsSync(dir), `${dir} removed`);
});

test('stale run cgroups of a dead daemon are removed, those of a live one are kept', async () => {
  const layout = hostCgroups()!;
  // A pid that cannot be live: above the kernel's pid_max (a reaped child's pid could be reused).
  const deadPid = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim()) + 1;
  const staleName = `run-${deadPid}-1-0badc0de`;
  const stale = [...new Set([layout.memoryParent, layout.pidsParent, layout.cpuParent])].map((p) => join(p, staleName));
  for (const dir of stale) mkdirSync(dir, { recursive: true });
  const live = RunCgroup.create(layout, { memoryBytes: 64 << 20, pids: 4, cpuPercent: 100 });
  try {
    const removed = removeStaleRuns(layout);
    // (Stale runs of other dead processes may go too.)
    for (const dir of stale) assert.ok(removed.includes(dir), `${dir} reported`);
    for (const dir of stale) assert.not.ok(existsSync(dir));
    for (const dir of live.dirs) assert.ok(existsSync(dir), 'the live run is kept');
  } finally {
    await live.removeWhenEmpty();
  }
});

test('share groups: a VM\'s runs are made inside vm-NAME, stale runs in groups and empty groups are removed', async () => {
  const layout = hostCgroups()!;
  const parents = [...new Set([layout.memoryParent, layout.pidsParent, layout.cpuParent])];
  const a1 = RunCgroup.create(layout, { memoryBytes: 64 << 20, pids: 4, cpuPercent: 100 }, { shareGroup: 'vm-a.test' });
  const a2 = RunCgroup.create(layout, { memoryBytes: 64 << 20, pids: 4, cpuPercent: 100 }, { shareGroup: 'vm-a.test' });
  try {
    for (const dir of [...a1.dirs, ...a2.dirs]) assert.ok(parents.some((p) => dir.startsWith(`${p}/vm-vm-a.test/run-`)), dir);
    assert.is(new Set(a1.dirs.map((d) => d.slice(0, d.lastIndexOf('/')))).size, parents.length, 'one share group directory per hierarchy');
    // A live run keeps its group.
    removeShareGroup(layout, 'vm-a.test');
    for (const p of parents) assert.ok(existsSync(join(p, 'vm-vm-a.test')));
  } finally {
    await a1.removeWhenEmpty();
    await a2.removeWhenEmpty();
  }
  removeShareGroup(layout, 'vm-a.test');
  for (const p of parents) assert.not.ok(existsSync(join(p, 'vm-vm-a.test')), 'removed once empty');
  // A dead daemon's run inside a group, and the group with it, go at start-up.
  const dead = spawn('true');
  await new Promise((r) => dead.on('exit', r));
  const stale = parents.map((p) => join(p, 'vm-gone', `run-${dead.pid}-1-0badc0de`));
  for (const dir of stale) mkdirSync(dir, { recursive: true });
  const removed = removeStaleRuns(layout);
  for (const dir of stale) assert.ok(removed.includes(dir) && !existsSync(dir), dir);
  for (const p of parents) assert.not.ok(existsSync(join(p, 'vm-gone')), 'the emptied group went too');
  assert.throws(() => RunCgroup.create(layout, { memoryBytes: 64 << 20, pids: 4, cpuPercent: 100 }, { shareGroup: '../x' }), /share group "..\/x" must match/);
});

test("a thread's own v1 cgroup directories come from /proc/thread-self/cgroup, under the layout's mounts", () => {
  // The directories must exist: the layout is this host's own when it is v1 (as the mounts of
  // HYBRID otherwise, whose cpu,cpuacct mount point few hosts have).
  const host = hostCgroups();
  const layout = host?.version === 1 ? host : detectCgroups(HYBRID)!;
  const mountOf = (parent: string) => parent.slice(0, parent.lastIndexOf('/'));
  const text = '9:name=systemd:/\n8:pids:/\n4:memory:/\n2:cpuacct:/y\n1:cpu:/\n0::/\n';
  assert.equal(threadCgroupDirs(layout, text), [...new Set([mountOf(layout.memoryParent), mountOf(layout.pidsParent), mountOf(layout.cpuParent)].map((m) => `${m}/`))]);
  // A path that does not exist under the mount (a container's sub-tree): not found, no guess.
  assert.is(threadCgroupDirs(layout, '8:pids:/nowhere-vo-test\n4:memory:/\n1:cpu:/\n'), undefined);
  assert.is(threadCgroupDirs(layout, '4:memory:/\n1:cpu:/\n'), undefined, 'no pids line');
  assert.is(threadCgroupDirs(layout, '8:pids:/\n4:memory:/\n2:cpuacct:/\n'), undefined, 'no cpu line (cpuacct is not cpu)');
});

/** The memory and pids cgroup paths of a task, from /proc/PID[/task/TID]/cgroup. */
function cgroupsOf(procFile: string): { memory: string; pids: string; cpu: string } {
  const text = readFileSync(procFile, 'utf8');
  const of = (c: string) => text.split('\n').find((l) => l.split(':')[1]?.split(',').includes(c))!.split(':').slice(2).join(':');
  return { memory: of('memory'), pids: of('pids'), cpu: of('cpu') };
}

test('v1: spawnInside forks the child inside the run cgroups, and the thread goes back where it was', async () => {
  const layout = hostCgroups()!;
  if (layout.version !== 1) {
    // v2 has no per-thread move of memory and pids: spawnInside says so, and run() moves the child.
    const group = RunCgroup.create(layout, { memoryBytes: 64 << 20, pids: 4, cpuPercent: 100 });
    assert.is(group.spawnInside(() => 1), undefined);
    await group.removeWhenEmpty();
    return;
  }
  const before = cgroupsOf('/proc/thread-self/cgroup');
  const group = RunCgroup.create(layout, { memoryBytes: 32 << 20, pids: 3, cpuPercent: 100 }, { limitsLater: true });
  try {
    assert.is(readFileSync(join(group.pidsDir, 'pids.max'), 'utf8').trim(), 'max', 'no limit while the thread may be inside');
    let during: { memory: string; pids: string; cpu: string } | undefined;
    const inside = group.spawnInside(() => {
      during = cgroupsOf('/proc/thread-self/cgroup');
      return spawn('sleep', ['30'], { stdio: 'ignore' });
    });
    assert.ok(inside, 'spawnInside works on this v1 host');
    const child = inside!.value;
    const exited = new Promise((r) => child.on('exit', (_code, signal) => r(signal)));
    assert.ok(during!.memory.endsWith(group.memoryDir.slice(group.memoryDir.lastIndexOf('/'))), `the thread was in the run's memory cgroup: ${during!.memory}`);
    assert.ok(during!.cpu.endsWith(group.cpuDir.slice(group.cpuDir.lastIndexOf('/'))), `the thread was in the run's cpu cgroup: ${during!.cpu}`);
    assert.is(readFileSync(join(group.cpuDir, 'cpu.cfs_quota_us'), 'utf8').trim(), '-1', 'no CPU quota while the thread may be inside');
    assert.equal(cgroupsOf('/proc/thread-self/cgroup'), before, 'the thread is back in its own cgroups');
    assert.equal(cgroupsOf(`/proc/${child.pid}/cgroup`), during, 'the child was born in the run cgroups');
    assert.equal(group.pids(), [child.pid], 'only the child is in the run');
    group.applyLimits();
    assert.is(readFileSync(join(group.pidsDir, 'pids.max'), 'utf8').trim(), '3');
    assert.is(readFileSync(join(group.memoryDir, 'memory.limit_in_bytes'), 'utf8').trim(), String(32 << 20));
    assert.is(readFileSync(join(group.cpuDir, 'cpu.cfs_quota_us'), 'utf8').trim(), '100000');
    group.killAll();
    assert.is(await exited, 'SIGKILL');
  } finally {
    await group.removeWhenEmpty();
  }
});

test('v1: a spawn that throws inside still takes the thread back home', async () => {
  const layout = hostCgroups()!;
  if (layout.version !== 1) return;
  const before = cgroupsOf('/proc/thread-self/cgroup');
  const group = RunCgroup.create(layout, { memoryBytes: 32 << 20, pids: 3, cpuPercent: 100 }, { limitsLater: true });
  try {
    assert.throws(
      () =>
        group.spawnInside(() => {
          throw new Error('spawn failed');
        }),
      /spawn failed/,
    );
    assert.equal(cgroupsOf('/proc/thread-self/cgroup'), before);
    assert.equal(group.pids(), []);
  } finally {
    await group.removeWhenEmpty();
  }
});

test.run();
