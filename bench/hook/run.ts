// bench/hook: wall time of one libvirt hook invocation, vs `node -e 0` in the same run.
//   baseline: `node -e 0` spawned the same way (same env, the same XML written to its stdin)
//   hook:     the installed hook file (the CLI's `hook install` output), real domain XML on stdin:
//             - plain:   a domain without our metadata (what most domains cost)
//             - absent:  an opted-in domain at `started begin`, no daemon (one stderr line, exit 0)
//             - present: an opted-in domain at `started begin` / `stopped end` with the real
//                        daemon (`virt-offload serve`, its own process as in production)
//                        answering add-vm / remove-vm on its control socket
//   target:   ≤ 1.5× the baseline's median (libvirt waits for the hook on every domain start)
// Iterations rotate through the cases so load on this shared 2-core machine hits all alike.
// Usage: node dist/bench/hook/run.js [--runs N]
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { domainXml, installHook, optIn, runHook } from '../../test/hooks/helpers.js';
import { repoRoot, run, scratchDir, waitUntil } from '../../testbed/tools.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '40' } } });
const runs = Number(values.runs);
const TARGET = 1.5;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

const scratch = scratchDir('vo-bench-hook-');
try {
  const repo = join(scratch.dir, 'policy');
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  const runDir = join(scratch.dir, 'run');
  const daemon = spawn(
    process.execPath,
    [join(repoRoot, 'dist/virt-offload.cjs'), 'serve', '--repo', repo, '--run-dir', runDir, '--store', join(scratch.dir, 'store'), '--audit-log', join(scratch.dir, 'audit.jsonl'), '--log-level', 'error', '--watch-interval', '0'],
    { stdio: 'ignore' },
  );
  await waitUntil('the daemon control socket', () => existsSync(join(runDir, 'control.sock')), 20_000);
  const present = installHook(join(scratch.dir, 'hooks'), runDir, ['--no-log-file']);
  const absent = installHook(join(scratch.dir, 'hooks-absent'), join(scratch.dir, 'no-daemon'), ['--no-log-file']);
  const plainXml = domainXml({ name: 'bench' });
  const optedXml = domainXml({ name: 'bench', metadata: optIn('enabled="yes" required="no"') });

  const cases: Array<{ name: string; once: () => Promise<number> }> = [
    {
      name: 'node -e 0 (baseline)',
      once: async () => (await runHook(process.execPath, ['-e', '0'], plainXml)).ms,
    },
    {
      name: 'hook, no metadata',
      once: async () => {
        const r = await runHook(present, ['bench', 'started', 'begin', '-'], plainXml);
        if (r.status !== 0 || r.stderr !== '') throw new Error(`hook failed: ${r.status} ${r.stderr}`);
        return r.ms;
      },
    },
    {
      name: 'hook, opted in, daemon absent',
      once: async () => {
        const r = await runHook(absent, ['bench', 'started', 'begin', '-'], optedXml);
        if (r.status !== 0 || !r.stderr.includes('not running')) throw new Error(`hook failed: ${r.status} ${r.stderr}`);
        return r.ms;
      },
    },
    {
      name: 'hook, opted in, daemon present: started',
      once: async () => {
        const r = await runHook(present, ['bench', 'started', 'begin', '-'], optedXml);
        if (r.status !== 0 || r.stderr !== '') throw new Error(`hook failed: ${r.status} ${r.stderr}`);
        return r.ms;
      },
    },
    {
      name: 'hook, opted in, daemon present: stopped',
      once: async () => {
        const r = await runHook(present, ['bench', 'stopped', 'end', '-'], optedXml);
        if (r.status !== 0 || r.stderr !== '') throw new Error(`hook failed: ${r.status} ${r.stderr}`);
        return r.ms;
      },
    },
  ];
  const times = cases.map(() => [] as number[]);
  // Warm the page cache and the daemon.
  for (const c of cases) await c.once();
  for (let i = 0; i < runs; i++) for (const [k, c] of cases.entries()) times[k]!.push(await c.once());
  const exited = new Promise((done) => daemon.once('exit', done));
  daemon.kill('SIGTERM');
  await exited;

  const base = median(times[0]!);
  console.log(`bench/hook: ${runs} runs per case, wall time per invocation (spawn → exit), node ${process.version}`);
  console.log(`${'case'.padEnd(44)} ${'min'.padStart(9)} ${'median'.padStart(9)} ${'p90'.padStart(9)}   ratio (medians)`);
  let worst = 0;
  for (const [k, c] of cases.entries()) {
    const m = median(times[k]!);
    const ratio = m / base;
    if (k > 0) worst = Math.max(worst, ratio);
    console.log(`${c.name.padEnd(44)} ${Math.min(...times[k]!).toFixed(1).padStart(6)} ms ${m.toFixed(1).padStart(6)} ms ${pct(times[k]!, 0.9).toFixed(1).padStart(6)} ms   ${ratio.toFixed(2)}x`);
  }
  console.log(`worst hook case: ${worst.toFixed(2)}x node -e 0 (target ≤ ${TARGET}x): ${worst <= TARGET ? 'OK' : 'OVER TARGET'}`);
} finally {
  scratch.cleanup();
}
