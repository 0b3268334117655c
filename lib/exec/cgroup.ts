// Per-run cgroups for the memory and pids limits, on cgroup v2 or v1, whichever the host has.
// Detection reads /proc/self/mountinfo: v2 when /sys/fs/cgroup itself is a cgroup2 mount (the
// unified layout), else v1 with the memory and pids controllers mounted somewhere (a hybrid
// host's /sys/fs/cgroup/unified holds no controllers of its own, so it is not used).
// One run = one directory per hierarchy (two on v1, one on v2) under `<mount>/virt-offload/`;
// it is removed when the run ends. The memory limit also caps swap, so a hog cannot page out.
//
// Joining a run's cgroup. Moving another process in (a write to cgroup.procs) takes the
// kernel's cgroup_threadgroup_rwsem for writing, and when nothing has moved for a while that
// waits for an RCU grace period: 7–11 ms here, on every run whose requests are a few tens of
// milliseconds apart, and in writeFileSync it stalls the daemon's event loop as long. One move
// skips that lock: a thread moving itself alone (v1 `tasks`, pid 0; kernel/cgroup/cgroup.c,
// cgroup_procs_write_start). So on v1 the spawning thread steps into the run's cgroups, forks
// (the child is born in them, as fork copies the forking thread's cgroups), and steps back out:
// ~0.2 ms, and nothing of the run ever lived outside its cgroup. The limits are written after
// the thread is out, so the daemon is never inside a limit (its memory is charged through its
// main thread while that thread is in a memory cgroup). v2 has no per-thread move for these
// controllers (CLONE_INTO_CGROUP would do, and Node has no spawn for it): there the child is
// moved after spawn, off the event loop; the wait goes unless the cgroup2 mount has the
// favordynmods option.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { ExecError } from './errors.js';
import { DOMAIN_NAME } from '../policy/index.js';

export type CgroupVersion = 1 | 2;

export interface CgroupLayout {
  readonly version: CgroupVersion;
  /** v2: the one directory runs are created under; v1: one per controller. */
  readonly memoryParent: string;
  readonly pidsParent: string;
  readonly cpuParent: string;
}

/** What happened in a run's cgroup: how often each limit bit. */
export interface CgroupEvents {
  readonly oomKills: number;
  readonly pidsMaxHits: number;
}

const PARENT_NAME = 'virt-offload';

interface Mount {
  readonly point: string;
  readonly fstype: string;
  readonly superOptions: readonly string[];
}

/** Mount points in mountinfo escape space, tab, newline and backslash as octal (\040). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(' ');
    const right = line.slice(dash + 3).split(' ');
    if (left.length < 5 || right.length < 3) continue;
    mounts.push({ point: unescapeMount(left[4]!), fstype: right[0]!, superOptions: right[2]!.split(',') });
  }
  return mounts;
}

/** Which cgroup layout the host has, from its mount table; undefined when memory, pids and cpu are not all there (v1). */
export function detectCgroups(mountinfo: string, cgroupMount = '/sys/fs/cgroup'): CgroupLayout | undefined {
  const mounts = parseMountinfo(mountinfo);
  // The last mount on a point wins (it hides the earlier ones).
  const top = [...mounts].reverse().find((m) => m.point === cgroupMount);
  if (top?.fstype === 'cgroup2') {
    const parent = join(cgroupMount, PARENT_NAME);
    return { version: 2, memoryParent: parent, pidsParent: parent, cpuParent: parent };
  }
  const v1 = (controller: string) => mounts.find((m) => m.fstype === 'cgroup' && m.superOptions.includes(controller))?.point;
  const memory = v1('memory');
  const pids = v1('pids');
  const cpu = v1('cpu');
  if (memory === undefined || pids === undefined || cpu === undefined) return undefined;
  return { version: 1, memoryParent: join(memory, PARENT_NAME), pidsParent: join(pids, PARENT_NAME), cpuParent: join(cpu, PARENT_NAME) };
}

let cachedLayout: CgroupLayout | undefined | null = null;

/** The host's layout, detected once per process. */
export function hostCgroups(): CgroupLayout | undefined {
  if (cachedLayout === null) {
    let text = '';
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      text = '';
    }
    cachedLayout = detectCgroups(text);
  }
  return cachedLayout;
}

function cgroupError(action: string, path: string, err: unknown): ExecError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ExecError('cgroup', `cannot ${action} ${path}${code ? ` (${code})` : ''}`, { path, cause: err });
}

function write(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch (err) {
    throw cgroupError(`write '${value}' to`, path, err);
  }
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** `key N` lines (memory.events, pids.events, memory.oom_control): the value of `key`, 0 if absent. */
export function keyedValue(text: string, key: string): number {
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k === key && v !== undefined && /^[0-9]+$/.test(v)) return Number(v);
  }
  return 0;
}

let runCounter = 0;

/** A run's cgroup directories with its limits written, empty until `add`. */
export class RunCgroup {
  readonly layout: CgroupLayout;
  /** The directories of this run (two on v1: memory, pids; one on v2). */
  readonly dirs: readonly string[];
  readonly memoryDir: string;
  readonly pidsDir: string;
  readonly cpuDir: string;

  readonly #limits: RunLimits;

  private constructor(layout: CgroupLayout, name: string, limits: RunLimits) {
    this.layout = layout;
    this.#limits = limits;
    this.memoryDir = join(layout.memoryParent, name);
    this.pidsDir = join(layout.pidsParent, name);
    this.cpuDir = join(layout.cpuParent, name);
    this.dirs = [...new Set([this.memoryDir, this.pidsDir, this.cpuDir])];
  }

  /**
   * Create the run's directories and write the limits; on any failure nothing is left behind.
   * With `limitsLater`, the limits are written by applyLimits() (after spawnInside()).
   */
  static create(layout: CgroupLayout, limits: RunLimits, options: { limitsLater?: boolean; shareGroup?: string } = {}): RunCgroup {
    const run = `run-${process.pid}-${++runCounter}-${randomBytes(4).toString('hex')}`;
    const share = options.shareGroup === undefined ? undefined : shareGroupDir(options.shareGroup);
    const group = new RunCgroup(layout, share === undefined ? run : `${share}/${run}`, limits);
    try {
      if (layout.version === 2) {
        prepareV2Parent(layout.memoryParent);
        if (share !== undefined) enableV2Controllers(join(layout.memoryParent, share), true);
      }
      for (const dir of group.dirs) {
        try {
          mkdirSync(dir.slice(0, dir.lastIndexOf('/')), { recursive: true, mode: 0o755 });
          mkdirSync(dir, { mode: 0o755 });
        } catch (err) {
          throw cgroupError('create', dir, err);
        }
      }
      lowerParentCpuWeight(layout);
      if (options.limitsLater !== true) group.applyLimits();
    } catch (err) {
      group.remove();
      throw err;
    }
    return group;
  }

  /** Write the run's memory (and swap), pids and CPU limits. */
  applyLimits(): void {
    const mem = String(this.#limits.memoryBytes);
    if (this.layout.version === 2) {
      write(join(this.memoryDir, 'memory.max'), mem);
      if (existsSync(join(this.memoryDir, 'memory.swap.max'))) write(join(this.memoryDir, 'memory.swap.max'), '0');
    } else {
      write(join(this.memoryDir, 'memory.limit_in_bytes'), mem);
      // memsw (memory + swap) exists when swap accounting is on; it must be >= the plain limit,
      // which is written first. Equal values mean no swap at all for the run.
      if (existsSync(join(this.memoryDir, 'memory.memsw.limit_in_bytes'))) write(join(this.memoryDir, 'memory.memsw.limit_in_bytes'), mem);
    }
    write(join(this.pidsDir, 'pids.max'), String(this.#limits.pids));
    // A quota of CPU time per period: a spinning program gets its share and no more, so it
    // cannot take the host's CPUs from the daemon, the VMs and other runs (nice alone only
    // orders who goes first).
    const quotaUs = this.#limits.cpuPercent * (CPU_PERIOD_US / 100);
    if (this.layout.version === 2) write(join(this.cpuDir, 'cpu.max'), `${quotaUs} ${CPU_PERIOD_US}`);
    else {
      write(join(this.cpuDir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
      write(join(this.cpuDir, 'cpu.cfs_quota_us'), String(quotaUs));
    }
  }

  /** Move a process (all its threads) into the run's cgroups. */
  add(pid: number): void {
    for (const dir of this.dirs) write(join(dir, 'cgroup.procs'), String(pid));
  }

  /** add(), off the event loop: the kernel may hold the write for an RCU grace period. */
  async addAsync(pid: number): Promise<void> {
    for (const dir of this.dirs) {
      const path = join(dir, 'cgroup.procs');
      try {
        await writeFile(path, String(pid));
      } catch (err) {
        throw cgroupError(`write '${pid}' to`, path, err);
      }
    }
  }

  /**
   * v1: call `spawnChild` (which must fork synchronously, as child_process.spawn does) with the
   * calling thread inside the run's cgroups, so the child is born there, then move the thread
   * back where it was. Undefined when that cannot be done here (v2, or the thread's own cgroup
   * is not under the mounts this layout uses): the caller then moves the child after spawn.
   * Throws when the thread cannot be moved back (it stays in the run's cgroups; killAll() never
   * kills this process).
   */
  spawnInside<T>(spawnChild: () => T): { readonly value: T } | undefined {
    if (this.layout.version !== 1) return undefined;
    const home = threadCgroupDirs(this.layout);
    if (home === undefined) return undefined;
    try {
      for (const dir of this.dirs) write(join(dir, 'tasks'), '0');
    } catch {
      this.#moveThread(home);
      return undefined;
    }
    try {
      return { value: spawnChild() };
    } finally {
      this.#moveThread(home);
    }
  }

  #moveThread(home: readonly string[]): void {
    for (const dir of home) write(join(dir, 'tasks'), '0');
  }

  /** Whether `pid` is already in every one of the run's cgroups (read from their cgroup.procs). */
  holds(pid: number): boolean {
    const text = String(pid);
    return this.dirs.every((dir) => readOr(join(dir, 'cgroup.procs'), '').split('\n').includes(text));
  }

  /** Pids of the processes in the run (from the pids hierarchy: every task of the run is there). */
  pids(): number[] {
    return readOr(join(this.pidsDir, 'cgroup.procs'), '')
      .split('\n')
      .filter((s) => /^[0-9]+$/.test(s))
      .map(Number);
  }

  events(): CgroupEvents {
    if (this.layout.version === 2) {
      return {
        oomKills: keyedValue(readOr(join(this.memoryDir, 'memory.events'), ''), 'oom_kill'),
        pidsMaxHits: keyedValue(readOr(join(this.pidsDir, 'pids.events'), ''), 'max'),
      };
    }
    return {
      oomKills: keyedValue(readOr(join(this.memoryDir, 'memory.oom_control'), ''), 'oom_kill'),
      pidsMaxHits: keyedValue(readOr(join(this.pidsDir, 'pids.events'), ''), 'max'),
    };
  }

  /** SIGKILL every process in the run: cgroup.kill on v2 when the kernel has it, else one by one. */
  killAll(): void {
    if (this.layout.version === 2 && existsSync(join(this.pidsDir, 'cgroup.kill'))) {
      try {
        writeFileSync(join(this.pidsDir, 'cgroup.kill'), '1');
        return;
      } catch {
        // fall through to the one-by-one kill
      }
    }
    for (const pid of this.pids()) {
      // Listed while the daemon's thread is inside (spawnInside): never kill ourselves.
      if (pid === process.pid) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /**
   * Remove the directories. A cgroup with a process still in it cannot be removed (EBUSY): kill
   * what is left and retry for up to `waitMs`; a cgroup that stays busy is reported, not hidden.
   */
  async removeWhenEmpty(waitMs = 2000): Promise<void> {
    const deadline = Date.now() + waitMs;
    // The last task of a run is usually released within a fraction of a millisecond of bwrap's
    // exit: retry at once a few times, then back off to 10 ms.
    for (let attempt = 0; ; attempt++) {
      try {
        this.remove(true);
        return;
      } catch (err) {
        if (Date.now() >= deadline) throw err;
        this.killAll();
        if (attempt < 3) await new Promise((r) => setImmediate(r));
        else await new Promise((r) => setTimeout(r, Math.min(10, attempt - 2)));
      }
    }
  }

  /** rmdir each directory that exists; with `strict`, throw if one cannot be removed. */
  remove(strict = false): void {
    for (const dir of this.dirs) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        if (strict) throw cgroupError('remove', dir, err);
      }
    }
  }
}

export interface RunLimits {
  readonly memoryBytes: number;
  readonly pids: number;
  /** Percent of one CPU (100: one CPU). */
  readonly cpuPercent: number;
}

/** The CPU quota's period (the kernel's default, 100 ms): a quota of 1% is 1 ms per period. */
export const CPU_PERIOD_US = 100_000;

/**
 * v1: the calling thread's memory and pids cgroup directories (from /proc/thread-self/cgroup,
 * under the mounts of `layout`), or undefined when they cannot be found there (the mount is a
 * sub-tree, as in some containers, or a path does not exist).
 */
export function threadCgroupDirs(layout: CgroupLayout, text = readOr('/proc/thread-self/cgroup', '')): string[] | undefined {
  const wanted = [
    { controller: 'memory', mount: dirname(layout.memoryParent) },
    { controller: 'pids', mount: dirname(layout.pidsParent) },
    { controller: 'cpu', mount: dirname(layout.cpuParent) },
  ];
  const dirs: string[] = [];
  for (const { controller, mount } of wanted) {
    const line = text.split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
    const path = line?.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    if (path === undefined || !path.startsWith('/')) return undefined;
    const dir = join(mount, path);
    if (!existsSync(join(dir, 'tasks'))) return undefined;
    if (!dirs.includes(dir)) dirs.push(dir);
  }
  return dirs;
}

/**
 * The weight of the parent of all runs, against its siblings (system.slice, machine.slice…):
 * what nice 10 gives a process (110 against 1024). A run's nice orders it only among the tasks
 * of its own cpu cgroup, and each run has one: without this, all runs together would weigh as
 * much as the whole rest of the host when the CPUs are busy. Written once per process.
 */
export const PARENT_CPU_SHARES_V1 = 102;
export const PARENT_CPU_WEIGHT_V2 = 10;
const weighted = new Set<string>();

function lowerParentCpuWeight(layout: CgroupLayout): void {
  if (weighted.has(layout.cpuParent)) return;
  if (layout.version === 2) write(join(layout.cpuParent, 'cpu.weight'), String(PARENT_CPU_WEIGHT_V2));
  else write(join(layout.cpuParent, 'cpu.shares'), String(PARENT_CPU_SHARES_V1));
  weighted.add(layout.cpuParent);
}

/** v2: the parent must exist and pass memory, pids and cpu down to its children. */
function prepareV2Parent(parent: string): void {
  enableV2Controllers(parent.slice(0, parent.lastIndexOf('/')), false);
  enableV2Controllers(parent, true);
}

/** v2: `dir` (made if asked) passes memory, pids and cpu down to its children. */
function enableV2Controllers(dir: string, make: boolean): void {
  if (make) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw cgroupError('create', dir, err);
    }
  }
  const enabled = readOr(join(dir, 'cgroup.subtree_control'), '').split(/\s+/);
  if (!enabled.includes('memory') || !enabled.includes('pids') || !enabled.includes('cpu')) write(join(dir, 'cgroup.subtree_control'), '+memory +pids +cpu');
}

/**
 * Share groups: the runs of one VM are created inside one cgroup of their own,
 * `<parent>/vm-<name>/run-…`. The kernel shares CPU time out between siblings first, so each
 * VM's runs together get what one sibling gets, however many it starts at once; a VM that
 * floods the host with runs slows its own runs, not another VM's.
 */
/** A share group is named after a VM: the policy's own shape of a VM name. */
const SHARE_GROUP = DOMAIN_NAME;

function shareGroupDir(name: string): string {
  if (!SHARE_GROUP.test(name)) throw new ExecError('bad-request', `share group ${JSON.stringify(name)} must match ${SHARE_GROUP.source} (a VM name)`);
  return `vm-${name}`;
}

/**
 * Remove a share group's directories once no run is in them (a VM was removed). A group with a
 * run still in it stays (EBUSY): it goes when the daemon next starts (removeStaleRuns).
 */
export function removeShareGroup(layout: CgroupLayout, name: string): void {
  const share = shareGroupDir(name);
  for (const parent of new Set([layout.memoryParent, layout.pidsParent, layout.cpuParent])) {
    try {
      rmdirSync(join(parent, share));
    } catch {
      // gone already, or still in use
    }
  }
}

/**
 * Remove the cgroups of runs whose daemon died (its pid, in the directory name, is gone):
 * kill what is still in them, then rmdir. For the daemon's start-up; returns what was removed.
 * Runs of a live process (this one or another daemon) are left alone.
 */
export function removeStaleRuns(layout: CgroupLayout): string[] {
  const removed: string[] = [];
  const listing = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  for (const parent of new Set([layout.memoryParent, layout.pidsParent, layout.cpuParent])) {
    // The runs directly under the parent, and those of each VM's share group; an emptied share
    // group goes too (a live daemon's runs keep theirs busy).
    const groups = listing(parent).filter((n) => /^vm-/.test(n) && SHARE_GROUP.test(n.slice(3)));
    for (const dir of [parent, ...groups.map((g) => join(parent, g))]) removed.push(...removeStaleRunsIn(dir));
    for (const g of groups) {
      try {
        rmdirSync(join(parent, g));
        removed.push(join(parent, g));
      } catch {
        // a run is still in it
      }
    }
  }
  return removed;
}

function removeStaleRunsIn(parent: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = /^run-([0-9]+)-[0-9]+-[0-9a-f]{8}$/.exec(name);
    if (m === null || existsSync(`/proc/${m[1]}`)) continue;
    const dir = join(parent, name);
    for (const pid of readOr(join(dir, 'cgroup.procs'), '').split('\n').filter((p) => /^[0-9]+$/.test(p))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
    try {
      rmdirSync(dir);
      removed.push(dir);
    } catch {
      // still busy: the next start-up tries again
    }
  }
  return removed;
}
