// bench/exec: what run() adds on top of bubblewrap itself, measured in the same run.
//   baseline: a bare bwrap invocation of the same installed binary with the same namespaces,
//             binds and uid (bwrap spawned from node, output collected, exit awaited)
//   run():    the exec helper: re-measure the store file, cgroup create/join/remove,
//             --info-fd/--block-fd hand-shake, bytes piped in with --file, output capture
//   target:   ≤ 3 ms p50 added
// Iterations alternate between the two so that load on this shared 2-core machine hits both
// alike. Usage: node dist/bench/exec/run.js [--runs N]. Also prints the parts of the overhead
// (measurement of the store file, cgroup create+remove) timed on their own.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { bwrapArgs, closeInheritedFds, hostCgroups, loadVerified, run, SANDBOX_DIR } from '../../lib/exec/index.js';
import { RunCgroup } from '../../lib/exec/cgroup.js';
import { buildProbe, install, limits } from '../../test/exec/helpers.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '60' } } });
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), 'vo-bench-exec-'));
// The bare baseline binds the installed file: bwrap runs as 65534 and must reach it.
chmodSync(work, 0o711);

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const fmt = (ms: number) => `${ms.toFixed(2).padStart(7)} ms`;

/** bwrap alone: the same sandbox, the installed file bound read-only instead of copied in. */
function bareBwrap(path: string): Promise<number> {
  const args = bwrapArgs({ files: [], roBinds: [], env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' }, command: [`${SANDBOX_DIR}/prog`, 'echo', '0', 'hi'] });
  // Bind the file just before the command separator.
  const sep = args.indexOf('--');
  args.splice(sep, 0, '--ro-bind', path, `${SANDBOX_DIR}/prog`);
  const asRoot = process.getuid?.() === 0;
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/bwrap', args, { stdio: ['ignore', 'pipe', 'pipe'], env: {}, ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    const err: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 || Buffer.concat(out).toString() !== '[0][hi]\n') reject(new Error(`bare bwrap failed: exit ${code}: ${Buffer.concat(err).toString()}`));
      else resolve(performance.now() - t);
    });
  });
}

async function viaRun(path: string, measurement: string): Promise<number> {
  const t = performance.now();
  const r = await run({ binary: { path, measurement }, argv: ['echo', '0', 'hi'], limits: limits(), sandbox: 'bwrap' });
  const ms = performance.now() - t;
  if (r.exitCode !== 0 || r.stdout.toString() !== '[0][hi]\n') throw new Error(`run() failed: ${r.exitCode} ${r.stderr}`);
  return ms;
}

try {
  closeInheritedFds();
  const installed = join(work, 'probe.installed');
  const measurement = await install(buildProbe(work), installed);
  chmodSync(installed, 0o555); // bare bwrap executes it in place
  // Warm-up: the sandbox probe, the page cache, JIT.
  for (let i = 0; i < 5; i++) {
    await viaRun(installed, measurement);
    await bareBwrap(installed);
  }
  const bare: number[] = [];
  const helper: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      bare.push(await bareBwrap(installed));
      helper.push(await viaRun(installed, measurement));
    } else {
      helper.push(await viaRun(installed, measurement));
      bare.push(await bareBwrap(installed));
    }
  }
  const verify: number[] = [];
  const cgroup: number[] = [];
  const layout = hostCgroups()!;
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    await loadVerified(installed, measurement);
    verify.push(performance.now() - t);
    t = performance.now();
    const g = RunCgroup.create(layout, { memoryBytes: 256 << 20, pids: 65, cpuPercent: 100 });
    await g.removeWhenEmpty();
    cgroup.push(performance.now() - t);
  }
  const p50Bare = pct(bare, 0.5);
  const p50Run = pct(helper, 0.5);
  console.log(`exec overhead, ${runs} alternating runs each, probe binary ${(await loadVerified(installed, measurement)).size} bytes, cgroup v${layout.version}`);
  console.log(`  bare bwrap          p50 ${fmt(p50Bare)}   p90 ${fmt(pct(bare, 0.9))}`);
  console.log(`  run()               p50 ${fmt(p50Run)}   p90 ${fmt(pct(helper, 0.9))}`);
  console.log(`  added by run()      p50 ${fmt(p50Run - p50Bare)}   ratio ${(p50Run / p50Bare).toFixed(2)}x   target ≤ 3 ms  ${p50Run - p50Bare <= 3 ? 'OK' : 'MISSED'}`);
  console.log(`  parts: re-measure   p50 ${fmt(pct(verify, 0.5))}`);
  console.log(`         cgroup mk+rm p50 ${fmt(pct(cgroup, 0.5))}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
