// The exec helper against the real bubblewrap and the real cgroups of this host: what runs,
// what the sandbox keeps out, and that every limit stops the program.
import { createServer } from 'node:net';
import { getPriority } from 'node:os';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeInheritedFds, hostCgroups, run, RUN_NICE, type RunOptions, type StartInfo } from '../../lib/exec/index.js';
import { requireTool, scratchDir } from '../../testbed/tools.js';
import { buildProbe, cmdline, install, limits } from './helpers.js';

requireTool('bwrap', 'bubblewrap');
const scratch = scratchDir('vo-exec-');
const storeDir = join(scratch.dir, 'store');
mkdirSync(storeDir);
const storePath = join(storeDir, 'probe');
let measurement = '';

test.before(async () => {
  // The test runner may hand us fds without close-on-exec; the daemon closes them at start-up too.
  closeInheritedFds();
  measurement = await install(buildProbe(scratch.dir), storePath);
});
test.after(() => scratch.cleanup());

function probe(argv: string[], over: Partial<RunOptions> = {}) {
  return run({ binary: { path: storePath, measurement }, argv, limits: limits(), sandbox: 'bwrap', ...over });
}

test('an approved binary runs: argv as given (no shell), stdout, stderr and exit code come back', async () => {
  const out: Buffer[] = [];
  const r = await probe(['echo', '7', 'a b', '$(id)', '*', ';rm -rf /'], { onStdout: (c) => out.push(c) });
  assert.is(r.exitCode, 7);
  assert.is(r.signal, null);
  assert.is(Buffer.concat(out).toString(), '[7][a b][$(id)][*][;rm -rf /]\n');
  assert.is(r.stdout.length, 0, 'streamed output is not kept a second time');
  assert.is(r.stderr.toString(), 'to stderr\n', 'without onStderr, stderr is kept');
  assert.equal(r.limitsHit, { wall: false, memory: false, pids: false, output: false });
  assert.is(r.sandbox, 'bwrap');
  assert.ok(r.durationMs > 0 && r.durationMs < 10_000);
});

test('stdin reaches the program; the environment is minimal plus what the caller adds', async () => {
  const r = await probe(['stdin'], { stdin: 'line one\nline two\n' });
  assert.is(r.stdout.toString(), 'line one\nline two\n');
  const e = await probe(['env'], { env: { GREETING: 'hi' } });
  // PWD comes from bwrap's --chdir /tmp.
  assert.equal(e.stdout.toString().trim().split('\n').sort(), ['GREETING=hi', 'LANG=C.UTF-8', 'PATH=/usr/bin:/bin', 'PWD=/tmp']);
});

test('a signal death is reported as the signal', async () => {
  const r = await probe(['kill-self']);
  assert.is(r.signal, 'SIGSEGV');
  assert.is(r.exitCode, null);
});

test('sandbox: uid/gid 65534 inside and on the host, no capabilities, only stdio open', async () => {
  let hostStatus = '';
  let nices: number[] = [];
  const r = await probe(['status'], {
    onStart: (info: StartInfo) => {
      hostStatus = readFileSync(`/proc/${info.sandboxInitPid}/status`, 'utf8');
      nices = [getPriority(info.pid), getPriority(info.sandboxInitPid!)];
    },
  });
  const out = r.stdout.toString();
  assert.match(out, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
  assert.match(out, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m);
  for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.match(out, new RegExp(`^${cap}:\\s+0000000000000000$`, 'm'));
  assert.match(out, /^NoNewPrivs:\s+1$/m);
  // Only stdio: no bwrap control pipe, no fd of the host process.
  assert.match(out, /^FDS 0=\/dev\/null 1=socket:\[\d+\] 2=socket:\[\d+\]$/m);
  // Seen from the host, the sandbox runs as nobody, not as root.
  assert.match(hostStatus, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
  // …and yields the CPU to the daemon and the host: bwrap and the sandbox's pid 1 run at nice
  // 10 when it is released, and the program, its child, inherits that.
  assert.equal(nices, [RUN_NICE, RUN_NICE]);
  assert.match(out, new RegExp(`^NICE ${RUN_NICE}$`, 'm'));
});

test('sandbox: /etc/shadow, the store and the host root are out of reach', async () => {
  assert.is((await probe(['cat', '/etc/shadow'])).stdout.toString(), 'ERR open ENOENT\n');
  assert.is((await probe(['cat', storePath])).stdout.toString(), 'ERR open ENOENT\n');
  assert.is((await probe(['ls', storeDir])).stdout.toString(), 'ERR opendir ENOENT\n');
  assert.is((await probe(['ls', '/root'])).stdout.toString(), 'ERR opendir ENOENT\n');
  assert.is((await probe(['ls', '/home'])).stdout.toString(), 'ERR opendir ENOENT\n');
  // /etc holds the loader cache and nothing else.
  assert.is((await probe(['cat', '/etc/passwd'])).stdout.toString(), 'ERR open ENOENT\n');
  assert.is((await probe(['ls', '/etc'])).stdout.toString(), 'LISTED 3\n');
  // What is there: the library directories (read-only) and a private /tmp.
  assert.match((await probe(['ls', '/usr/lib'])).stdout.toString(), /^LISTED \d+\n$/);
  assert.is((await probe(['create', '/usr/lib/planted.so'])).stdout.toString(), 'ERR create EROFS\n');
  assert.is((await probe(['create', '/etc/ld.so.cache'])).stdout.toString(), 'ERR create EROFS\n');
  assert.is((await probe(['create', '/tmp/scratch'])).stdout.toString(), 'CREATED\n');
});

test('sandbox: no network, not even to a listener on the host loopback', async () => {
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    const r = await probe(['net', '127.0.0.1', String(port)]);
    assert.match(r.stdout.toString(), /^ERR connect (ENETUNREACH|ECONNREFUSED)\n$/);
    const r2 = await probe(['net', '1.1.1.1', '53']);
    assert.match(r2.stdout.toString(), /^ERR connect ENETUNREACH\n$/);
    assert.is(connections, 0);
  } finally {
    server.close();
  }
});

test('sandbox: no new user namespace inside (and so no capabilities in one: nf_tables and the like stay out of reach)', async () => {
  const r = await probe(['userns']);
  assert.match(r.stdout.toString(), /^ERR unshare (ENOSPC|EPERM)\n$/);
});

test('sandbox: the seccomp filter refuses ptrace, keyrings and io_uring (EPERM), answers clone3 with ENOSYS, and fork still works', async () => {
  const r = await probe(['syscalls']);
  assert.is(r.stdout.toString(), 'ptrace EPERM\nkeyctl EPERM\nio_uring_setup EPERM\nclone3 ENOSYS\nfork OK\n');
});

test('pids limit contains a fork bomb', async () => {
  const r = await probe(['forkbomb'], { limits: limits({ pids: 16 }) });
  const m = /FORK FAILED after (\d+) EAGAIN/.exec(r.stdout.toString());
  assert.ok(m, r.stdout.toString());
  // 16 tasks: the probe itself and 15 children.
  assert.is(Number(m![1]), 15);
  assert.is(r.limitsHit.pids, true);
  assert.is(r.exitCode, 0);
});

test('memory limit kills a memory hog', async () => {
  const r = await probe(['memhog', '256'], { limits: limits({ memoryBytes: 32 * 1024 * 1024 }) });
  assert.is(r.signal, 'SIGKILL');
  assert.is(r.limitsHit.memory, true);
  assert.not.match(r.stdout.toString(), /SURVIVED/);
  const ok = await probe(['memhog', '8'], { limits: limits({ memoryBytes: 32 * 1024 * 1024 }) });
  assert.is(ok.stdout.toString(), 'SURVIVED 8 MiB\n');
  assert.is(ok.limitsHit.memory, false);
});

test('CPU limit: two spinning processes get the quota of CPU time, not the host\'s CPUs', async () => {
  const r = await probe(['spin', '2000'], { limits: limits({ cpuPercent: 20 }) });
  const m = /CPU (\d+) WALL (\d+)/.exec(r.stdout.toString());
  assert.ok(m, r.stdout.toString() + r.stderr.toString());
  const [cpu, wall] = [Number(m![1]), Number(m![2])];
  // 20% of one CPU over ~2000 ms is ~400 ms; two periods (200 ms) of slack for where the run
  // began and for the kernel's per-CPU overrun, which it takes back from the next period.
  // Unlimited, two spinners take 2000-4000 ms; a quota twice too high takes ~800 ms.
  assert.ok(cpu <= 0.2 * wall + 200, `used ${cpu} ms of CPU in ${wall} ms with cpu=20%`);
  assert.is(r.exitCode, 0);
});

test('wall limit kills the whole tree (children in their own sessions too); no orphan is left, checked by pid', async () => {
  const marker = `sleeper-${process.pid}-${Date.now()}`;
  const seen = new Set<number>();
  let cgroupDirs: readonly string[] = [];
  const scan = () => {
    for (const name of readdirProc()) if (cmdline(name).includes(marker)) seen.add(name);
  };
  const t0 = Date.now();
  const out: Buffer[] = [];
  const r = await probe(['sleeper', marker, '4'], {
    limits: limits({ wallMs: 1500 }),
    onStart: (info) => {
      cgroupDirs = info.cgroupDirs;
    },
    // The probe says SLEEPING once its 4 children are forked: the process list is read then,
    // not after a fixed delay a busy host could outlast.
    onStdout: (chunk) => {
      out.push(chunk);
      if (Buffer.concat(out).toString().includes('SLEEPING\n')) scan();
    },
  });
  const elapsed = Date.now() - t0;
  assert.is(r.limitsHit.wall, true);
  assert.is(Buffer.concat(out).toString(), 'SLEEPING\n');
  assert.ok(elapsed >= 1500 && elapsed < 8000, `took ${elapsed} ms`);
  assert.ok(seen.size >= 5, `saw ${seen.size} sleeper processes during the run`);
  for (const pid of seen) assert.not.ok(cmdline(pid).includes(marker), `pid ${pid} survived`);
  let remaining = 0;
  for (const pid of readdirProc()) if (cmdline(pid).includes(marker)) remaining++;
  assert.is(remaining, 0);
  for (const dir of cgroupDirs) assert.throws(() => readFileSync(join(dir, 'cgroup.procs')), /ENOENT/, `${dir} removed`);
});

test('output cap: output is cut at limits.output and the run is stopped', async () => {
  const r = await probe(['spew', String(10 * 1024 * 1024)], { limits: limits({ outputBytes: 100_000 }) });
  assert.is(r.stdout.length, 100_000);
  assert.is(r.truncated, true);
  assert.is(r.limitsHit.output, true);
  const small = await probe(['spew', '1000'], { limits: limits({ outputBytes: 100_000 }) });
  assert.is(small.stdout.length, 1000);
  assert.is(small.truncated, false);
});

test('abort signal stops a run', async () => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const r = await probe(['sleeper', `abort-${process.pid}`, '1'], { signal: ac.signal });
  assert.is(r.aborted, true);
  assert.is(r.limitsHit.wall, false);
  assert.ok(r.durationMs < 5000);
});

test('concurrent runs each get their own sandbox, cgroup and output', async () => {
  const runs = await Promise.all([1, 2, 3, 4].map((n) => probe(['echo', String(n), `run ${n}`])));
  runs.forEach((r, i) => {
    assert.is(r.exitCode, i + 1);
    assert.is(r.stdout.toString(), `[${i + 1}][run ${i + 1}]\n`);
  });
});

test('cgroups were detected on this host', () => {
  const layout = hostCgroups();
  assert.ok(layout);
});

function readdirProc(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) if (/^[0-9]+$/.test(name)) out.push(Number(name));
  return out;
}

test.run();
