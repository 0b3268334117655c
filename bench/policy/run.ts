// bench/policy: loading and deciding with a large policy repository, against a floor measured
// in the same run.
//   Targets (issue 3, "Scale"), 100k entries across 10k files:
//     load (read every file + buildSnapshot) ≤ 300 ms, decide() p99 ≤ 10 µs, RSS ≤ 150 MB.
//   Floor: the same digests read from one sha256sum-style file into a plain Set<string>.
//   For the record: 1M entries, as 100k files × 10 versions (more binaries, the same shape
//   per file: the way a repository grows).
// Every figure comes from a fresh child process (node --expose-gc), so RSS is the process's
// own once full GCs stop shrinking it; the median of --runs processes is shown. "load" is
// loadPolicyWorkTree + the first buildSnapshot in a fresh process (cold JIT, warm page cache:
// what a daemon start costs); "warm rebuild" is buildSnapshot alone, repeated in the same
// process; "reload, 1 file changed" is a PolicyReloader's load after one file gained a version
// (what the daemon's reload on a new commit costs with the incremental loader).
// Usage: npm run bench:policy [-- --runs N --files N --versions N --big-runs N --big-files N --big-versions N --no-big]
// The default run takes about a minute here: 3 processes each side at 100k, 1 at 1M.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateRepo, type GeneratedRepo } from './generate.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'big-runs': { type: 'string', default: '1' },
    files: { type: 'string', default: '10000' },
    versions: { type: 'string', default: '10' },
    'big-files': { type: 'string', default: '100000' },
    'big-versions': { type: 'string', default: '10' },
    'no-big': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const child = new URL('./child.js', import.meta.url).pathname;

const TARGET = { loadMs: 300, p99Us: 10, rssMb: 150 };

interface Mem {
  rssMb: number;
  peakRssMb: number;
  heapMb: number;
  externalMb: number;
}
interface Lookups {
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  timerP50Us: number;
}
interface PolicyRun {
  files: number;
  entries: number;
  readMs: number;
  buildMs: number;
  loadMs: number;
  warmBuildMs: number;
  reloadMs: number;
  after: Mem;
  lookups: Lookups;
  outcomes: Record<string, number>;
}
interface FloorRun {
  entries: number;
  loadMs: number;
  after: Mem;
  lookups: Lookups;
}

function runChild<T>(args: string[]): T {
  const r = spawnSync(process.execPath, ['--expose-gc', child, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`child ${args[0]} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const med = <T>(rs: T[], f: (r: T) => number): number => median(rs.map(f));
const ms = (x: number): string => `${x.toFixed(0).padStart(6)} ms`;
const mb = (x: number): string => `${x.toFixed(1).padStart(6)} MB`;
const us = (x: number): string => `${x.toFixed(2).padStart(6)} µs`;
const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
const verdict = (value: number, target: number): string => (value <= target ? 'met' : `MISSED by ${((value / target - 1) * 100).toFixed(0)}%`);

function scenario(work: string, label: string, files: number, versions: number, runs: number, withTargets: boolean): void {
  const t = Date.now();
  const repo: GeneratedRepo = generateRepo(join(work, `repo-${files}x${versions}`), files, versions);
  console.log(`\n== ${label}: ${repo.entries} entries in ${repo.files} files (${files} binaries × ${versions} versions + groups.policy), ${(repo.bytes / 2 ** 20).toFixed(1)} MiB of text; generated in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  const vms = [...repo.vmNames.filter((_, i) => i % 97 === 0), 'not-in-any-group'].join(',');
  // The generator just wrote every file, so both sides read from the page cache; one unmeasured
  // run first, so neither side pays for the first start of Node after the generator.
  runChild<FloorRun>(['floor', repo.sumsFile]);
  const pol: PolicyRun[] = [];
  const flo: FloorRun[] = [];
  for (let i = 0; i < runs; i++) {
    pol.push(runChild<PolicyRun>(['policy', repo.dir, repo.sumsFile, vms, withTargets ? '3' : '1']));
    flo.push(runChild<FloorRun>(['floor', repo.sumsFile]));
  }
  const idle = runChild<{ after: Mem }>(['idle']).after.rssMb;
  const load1 = loadavg()[0]!;
  if (pol[0]!.entries !== repo.entries) throw new Error(`snapshot has ${pol[0]!.entries} entries, expected ${repo.entries}`);

  const load = med(pol, (r) => r.loadMs);
  const rss = med(pol, (r) => r.after.rssMb);
  const p99 = med(pol, (r) => r.lookups.p99Us);
  const fLoad = med(flo, (r) => r.loadMs);
  const fRss = med(flo, (r) => r.after.rssMb);
  const fP99 = med(flo, (r) => r.lookups.p99Us);
  console.log(`   median of ${runs} fresh process${runs === 1 ? '' : 'es'} each (load average now ${load1.toFixed(2)}); Node alone (node --expose-gc, nothing loaded): RSS ${mb(idle)}`);
  console.log('                               policy (loader + buildSnapshot, decide)    floor (Set from one sums file)   ratio');
  console.log(`   load                      ${ms(load)}   (read ${ms(med(pol, (r) => r.readMs)).trim()} + build ${ms(med(pol, (r) => r.buildMs)).trim()})   ${ms(fLoad)}                    ${ratio(load, fLoad)}`);
  console.log(`   warm rebuild (build only) ${ms(med(pol, (r) => r.warmBuildMs))}`);
  console.log(`   reload, 1 file changed    ${ms(med(pol, (r) => r.reloadMs))}   (PolicyReloader: every file read, only the changed one parsed)`);
  console.log(`   RSS after load, GC'd      ${mb(rss)}                                ${mb(fRss)}                    ${ratio(rss, fRss)}`);
  console.log(`     of which over bare Node ${mb(rss - idle)}                                ${mb(fRss - idle)}                    ${ratio(rss - idle, fRss - idle)}`);
  console.log(`   peak RSS during load      ${mb(med(pol, (r) => r.after.peakRssMb))}                                ${mb(med(flo, (r) => r.after.peakRssMb))}`);
  console.log(`   JS heap used              ${mb(med(pol, (r) => r.after.heapMb))}                                ${mb(med(flo, (r) => r.after.heapMb))}`);
  console.log(`   lookup p50                ${us(med(pol, (r) => r.lookups.p50Us))}                                ${us(med(flo, (r) => r.lookups.p50Us))}                    ${ratio(med(pol, (r) => r.lookups.p50Us), med(flo, (r) => r.lookups.p50Us))}`);
  console.log(`   lookup p99                ${us(p99)}                                ${us(fP99)}                    ${ratio(p99, fP99)}`);
  console.log(`   lookup p99.9 / max        ${us(med(pol, (r) => r.lookups.p999Us))} / ${us(med(pol, (r) => r.lookups.maxUs)).trim()}                    ${us(med(flo, (r) => r.lookups.p999Us))} / ${us(med(flo, (r) => r.lookups.maxUs)).trim()}`);
  console.log(`   (1M lookups on fresh strings, 80% listed, half of those asked by one of the binary's VMs; each timed alone, a bare timer pair costs ${us(pol[0]!.lookups.timerP50Us).trim()}, included)`);
  const o = pol[0]!.outcomes;
  const total = Object.values(o).reduce((a, b) => a + b, 0);
  console.log(`   decide() outcomes of the first 100k: ${Object.entries(o).map(([k, v]) => `${k} ${((100 * v) / total).toFixed(0)}%`).join(', ')}`);
  if (withTargets) {
    console.log(`   targets: load ≤ ${TARGET.loadMs} ms ${verdict(load, TARGET.loadMs)}; lookup p99 ≤ ${TARGET.p99Us} µs ${verdict(p99, TARGET.p99Us)}; RSS ≤ ${TARGET.rssMb} MB ${verdict(rss, TARGET.rssMb)}`);
  }
}

const work = mkdtempSync(join(tmpdir(), 'vo-bench-policy-'));
try {
  console.log(`bench/policy on ${process.version}, ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; shared machines are noisy: compare with the floor of the same run.`);
  scenario(work, 'target', Number(values.files), Number(values.versions), Number(values.runs), true);
  if (!values['no-big']) scenario(work, 'for the record', Number(values['big-files']), Number(values['big-versions']), Number(values['big-runs']), false);
} finally {
  if (values.keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
