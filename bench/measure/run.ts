// bench/measure: measurement speed against baselines measured in the same run.
//   1. hashing throughput of `measure` (file reads + canonical stream) vs node:crypto one-shot
//      sha256 of the same bytes already in memory                      target ≥ 0.85×
//   2. whole-process `virt-offload measure` of a ~500 MB ELF with heavy debug info
//      vs `sha256sum` of the file                                     target ≥ 15× faster
//      vs `node -e 0` (Node's start-up is the floor)                  target ≤ 1.3× its wall time
//      beside them: `objcopy --strip-debug` + `sha256sum` (native tools that skip debug data)
// Usage: npm run bench:measure [-- --runs N --mb SIZE]. Machines here are shared and noisy:
// read the ratios, not the absolute times; every figure is a median of N runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { measureFile } from '../../lib/io/index.js';
import { alignedScratch } from '../../lib/measure/index.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '9' }, mb: { type: 'string', default: '500' } } });
const runs = Number(values.runs);
const debugMb = Number(values.mb);
const cli = new URL('../../virt-offload.cjs', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'vo-bench-measure-'));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function timeMs(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}
async function timeMsAsync(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}
function spawnMs(cmd: string, args: string[]): number {
  return timeMs(() => {
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  });
}
function fmt(ms: number): string {
  return `${ms.toFixed(1).padStart(8)} ms`;
}

function writeRandomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (let left = bytes; left > 0; left -= chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, Math.min(left, chunk.length));
  }
  closeSync(fd);
}

try {
  // ---- 1. throughput on hashed bytes -------------------------------------------------
  const rawPath = join(work, 'data.bin');
  const rawBytes = 512 << 20;
  writeRandomFile(rawPath, rawBytes);
  const inMemory = readFileSync(rawPath); // also warms the page cache
  const scratch = alignedScratch();
  const oneShot: number[] = [];
  const ours: number[] = [];
  for (let i = 0; i < runs; i++) {
    oneShot.push(timeMs(() => createHash('sha256').update(inMemory).digest('hex')));
    ours.push(await timeMsAsync(() => measureFile(rawPath, { scratch })));
  }
  const mbps = (ms: number) => ((rawBytes / 1048576) / (ms / 1000)).toFixed(0);
  console.log(`1. hashing throughput, ${rawBytes >> 20} MiB (raw profile: every byte hashed), median of ${runs}`);
  console.log(`   node:crypto one-shot sha256, bytes in memory   ${fmt(median(oneShot))}  ${mbps(median(oneShot))} MiB/s   (baseline)`);
  console.log(`   measure(): file reads + canonical stream       ${fmt(median(ours))}  ${mbps(median(ours))} MiB/s`);
  console.log(`   ratio: ${(median(oneShot) / median(ours)).toFixed(2)}x of one-shot throughput   (target >= 0.85x)\n`);

  // ---- 2. whole process on a big ELF with heavy debug info ----------------------------
  const src = join(work, 'prog.c');
  writeFileSync(src, Array.from({ length: 400 }, (_, i) => `struct s${i} { int a${i}; long b${i}[${i + 1}]; };\nint f${i}(struct s${i} *p) { return p->a${i} + (int)p->b${i}[0]; }\n`).join('') + 'int main(void) { return 0; }\n');
  const small = join(work, 'prog');
  execFileSync('gcc', ['-g3', '-O1', '-o', small, src]);
  // Real DWARF from -g3 plus a large non-loaded debug section: what a big debug build looks
  // like to the measurement (debug data outside every segment), built in seconds.
  const blob = join(work, 'debug.blob');
  writeRandomFile(blob, debugMb << 20);
  const big = join(work, 'prog-debug');
  execFileSync('objcopy', ['--add-section', `.debug_bench=${blob}`, '--set-section-flags', '.debug_bench=readonly,debug', small, big]);
  rmSync(blob);
  const bigSize = statSync(big).size;
  readFileSync(big); // warm the page cache for every contender alike
  const stripped = join(work, 'prog-stripped');

  const node0: number[] = [];
  const voRuns: number[] = [];
  const sha: number[] = [];
  const stripSha: number[] = [];
  for (let i = 0; i < runs; i++) {
    node0.push(spawnMs(process.execPath, ['-e', '0']));
    voRuns.push(spawnMs(process.execPath, [cli, 'measure', big]));
    sha.push(spawnMs('sha256sum', [big]));
    stripSha.push(timeMs(() => {
      execFileSync('objcopy', ['--strip-debug', big, stripped]);
      execFileSync('sha256sum', [stripped]);
    }));
  }
  const hashed = (JSON.parse(execFileSync(process.execPath, [cli, 'measure', '--json', big], { encoding: 'utf8' })) as { hashedBytes: number }).hashedBytes;
  console.log(`2. whole process on a ${(bigSize / 1048576).toFixed(0)} MiB ELF (${hashed} bytes hashed), median of ${runs}`);
  console.log(`   node -e 0                                   ${fmt(median(node0))}   (floor)`);
  console.log(`   virt-offload measure                        ${fmt(median(voRuns))}`);
  console.log(`   sha256sum                                   ${fmt(median(sha))}   (baseline)`);
  console.log(`   objcopy --strip-debug + sha256sum           ${fmt(median(stripSha))}   (native floor for skipping debug data)`);
  console.log(`   ratio vs sha256sum: ${(median(sha) / median(voRuns)).toFixed(1)}x faster   (target >= 15x)`);
  console.log(`   ratio vs node -e 0: ${(median(voRuns) / median(node0)).toFixed(2)}x its wall time   (target <= 1.3x)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
