// One measurement in a fresh process (so its RSS is its own), started by bench/policy/run.ts
// with --expose-gc. Prints one JSON line on stdout.
//   node child.js policy DIR SUMS VMS WARM   load the repository as the daemon does (loader +
//                                       buildSnapshot), then rebuild WARM times in the same process
//   node child.js floor SUMS            read the sha256sum-style file into a Set<string>
//   node child.js idle                  nothing: the RSS of Node itself
// Lookups (1M, 80% listed measurements, 20% unknown ones) use fresh strings made from bytes,
// as a measurement arriving on a socket would be, and are timed one by one.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PolicySnapshot } from '../../lib/policy/index.js';

const LOOKUPS = 1_000_000;
const HIT_SHARE = 0.8;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

/**
 * Full GCs until the heap and RSS stop shrinking (at least 3, at most 8): V8 needs a second
 * one to drop what was allocated while the first was marking, and a third before it hands pages back to the system (what
 * its memory reducer does by itself once an idle daemon has loaded).
 */
function settle(): void {
  let last = Infinity;
  for (let i = 0; i < 8; i++) {
    gc!();
    const { rss, heapUsed } = process.memoryUsage();
    if (i >= 2 && rss + heapUsed >= last) break;
    last = rss + heapUsed;
  }
}

function memory(): { rssMb: number; heapMb: number; externalMb: number; peakRssMb: number } {
  settle();
  const m = process.memoryUsage();
  return { rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, externalMb: (m.external + m.arrayBuffers) / 2 ** 20, peakRssMb: process.resourceUsage().maxRSS / 1024 };
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** The digests (64 hex) of the sums file, as fresh flat strings not shared with anything loaded. */
function digestsOf(sumsFile: string): string[] {
  const bytes = readFileSync(sumsFile);
  const out: string[] = [];
  for (let i = 0; i + 64 <= bytes.length; ) {
    out.push(bytes.toString('latin1', i, i + 64));
    const nl = bytes.indexOf(10, i);
    if (nl < 0) break;
    i = nl + 1;
  }
  return out;
}

/** LOOKUPS query strings, HIT_SHARE of them listed; each a new string from bytes (no cached hash). */
function queries(digests: readonly string[], prefix: string): string[] {
  const out: string[] = new Array<string>(LOOKUPS);
  const miss = randomBytes(32 * LOOKUPS).toString('hex');
  for (let i = 0; i < LOOKUPS; i++) {
    const hex = Math.random() < HIT_SHARE ? digests[Math.floor(Math.random() * digests.length)]! : miss.slice(i * 64, i * 64 + 64);
    out[i] = Buffer.from(prefix + hex, 'latin1').toString('latin1');
  }
  return out;
}

/** Times `fn` on every query, one call at a time; p50/p99/max in µs, and what a bare timer pair costs. */
function timeLookups(qs: readonly string[], fn: (q: string, i: number) => unknown): Record<string, number> {
  const t = new Float64Array(qs.length);
  let sink = 0;
  for (let i = 0; i < qs.length; i++) {
    const a = process.hrtime.bigint();
    const r = fn(qs[i]!, i);
    const b = process.hrtime.bigint();
    t[i] = Number(b - a) / 1000;
    if (r) sink++;
  }
  const timer = new Float64Array(100_000);
  for (let i = 0; i < timer.length; i++) {
    const a = process.hrtime.bigint();
    const b = process.hrtime.bigint();
    timer[i] = Number(b - a) / 1000;
  }
  t.sort();
  timer.sort();
  return { p50Us: percentile(t, 0.5), p99Us: percentile(t, 0.99), p999Us: percentile(t, 0.999), maxUs: t[t.length - 1]!, timerP50Us: percentile(timer, 0.5), found: sink };
}

type PolicyCore = typeof import('../../lib/policy/index.js');
type PolicyLoader = typeof import('../../lib/policy/loader.js');

/**
 * Read and build, in a frame of its own: the file texts die with it, as in a daemon (a
 * register of a frame still running can keep them alive past any number of GCs).
 */
function load(core: PolicyCore, loader: PolicyLoader, dir: string) {
  const t0 = nowMs();
  const loaded = loader.loadPolicyWorkTree(dir);
  const t1 = nowMs();
  const result = core.buildSnapshot(loaded.files, { commit: loaded.commit });
  const t2 = nowMs();
  if (!result.ok) throw new Error(`the generated repository does not build:\n${result.errors.slice(0, 5).map((e) => e.message).join('\n')}`);
  return { snapshot: result.snapshot, files: loaded.files.length, readMs: t1 - t0, buildMs: t2 - t1 };
}

async function policy(dir: string, sumsFile: string, vmList: string, warmBuilds: number): Promise<object> {
  const core = await import('../../lib/policy/index.js');
  const loader = await import('../../lib/policy/loader.js');
  const { buildSnapshot, decide } = core;
  const before = memory();
  const first = load(core, loader, dir);
  let snapshot: PolicySnapshot | undefined = first.snapshot;
  const { files, readMs, buildMs } = first;
  const after = memory();

  // Full rebuilds in the same process: the JIT is warm.
  const warm: number[] = [];
  for (let i = 0; i < warmBuilds; i++) {
    const sources = loader.loadPolicyWorkTree(dir).files;
    const a = nowMs();
    const again = buildSnapshot(sources);
    warm.push(nowMs() - a);
    if (!again.ok) throw new Error('rebuild failed');
  }
  warm.sort((a, b) => a - b);

  // What the daemon's reload on a new commit costs with a PolicyReloader: every file read
  // again, only the changed one parsed (one binary gains a version each time). The file is
  // put back afterwards: the repository is shared with the next processes.
  const reloads: number[] = [];
  const reloader = new loader.PolicyReloader(dir);
  reloader.load();
  const shard = join(dir, 'binaries', readdirSync(join(dir, 'binaries')).sort()[0]!);
  const changed = join(shard, readdirSync(shard).sort()[0]!);
  const original = readFileSync(changed, 'utf8');
  try {
    for (let i = 0; i < Math.max(3, warmBuilds); i++) {
      writeFileSync(changed, `${original}version 99.0.${i} approved sha256:${'e'.repeat(56)}${String(i).padStart(8, '0')}\n`);
      const a = nowMs();
      reloader.load();
      reloads.push(nowMs() - a);
      if (reloader.stats.compiled !== 1) throw new Error(`reload parsed ${reloader.stats.compiled} files, expected 1`);
    }
  } finally {
    writeFileSync(changed, original);
  }
  reloads.sort((a, b) => a - b);

  const pool = vmList.split(',').map((name, i) => ({ name, uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` }));
  const qs = queries(digestsOf(sumsFile), 'sha256:');
  const s = snapshot;
  // The asking VM: for half the listed measurements one of the binary's own VMs (so approved
  // versions are allowed), otherwise one from a pool (mostly not in scope: a denial).
  const askers = qs.map((q, i) => {
    // Looked up through a copy: the timed lookup must hash the query string itself.
    const names = i % 2 === 0 ? s.index.get(Buffer.from(q, 'latin1').toString('latin1'))?.scope.names : undefined;
    const name = names === undefined || names.size === 0 ? undefined : names.values().next().value;
    return name === undefined ? pool[i % pool.length]! : { name, uuid: pool[0]!.uuid };
  });
  const outcomes: Record<string, number> = {};
  const lookups = timeLookups(qs, (q, i) => {
    const d = decide(s, askers[i]!, q);
    return d.allow || d.code !== 'unknown-measurement';
  });
  for (let i = 0; i < 100_000; i++) {
    const d = decide(s, askers[i]!, qs[i]!);
    const k = d.allow ? 'allow' : d.code;
    outcomes[k] = (outcomes[k] ?? 0) + 1;
  }
  const entries = snapshot.index.size;
  snapshot = undefined;
  return {
    files,
    entries,
    readMs,
    buildMs,
    loadMs: readMs + buildMs,
    warmBuildMs: warm[Math.floor(warm.length / 2)],
    reloadMs: reloads[Math.floor(reloads.length / 2)],
    before,
    after,
    lookups,
    outcomes,
  };
}

function floor(sumsFile: string): object {
  const before = memory();
  const t0 = nowMs();
  // The plainest fast loader: one file, split into lines, the first 64 characters of each.
  const text = readFileSync(sumsFile, 'latin1');
  const set = new Set<string>();
  let i = 0;
  while (i + 64 <= text.length) {
    set.add(text.slice(i, i + 64));
    const nl = text.indexOf('\n', i);
    if (nl < 0) break;
    i = nl + 1;
  }
  const t1 = nowMs();
  const after = memory();
  const qs = queries(digestsOf(sumsFile), '');
  const lookups = timeLookups(qs, (q) => set.has(q));
  return { entries: set.size, loadMs: t1 - t0, before, after, lookups };
}

const [mode, ...args] = process.argv.slice(2);
let out: object;
if (mode === 'policy') out = await policy(args[0]!, args[1]!, args[2]!, Number(args[3] ?? '3'));
else if (mode === 'floor') out = floor(args[0]!);
else if (mode === 'idle') out = { after: memory() };
else throw new Error(`unknown mode ${mode}`);
process.stdout.write(`${JSON.stringify(out)}\n`);
