// GLIBC_TUNABLES for the daemon (lib/daemon/malloc-tuning.ts): the environment helpers, that
// the setting does what it is there for (memory that 64 KiB buffers passed through goes back
// to the kernel), and that `virt-offload serve` reports whether it runs with it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MALLOC_TUNABLE, mallocHint, mallocTuned, mmapThreshold, withMallocTuning, withoutMallocTuning } from '../../lib/daemon/index.js';
import { startServe } from '../../testbed/offload-host.js';
import { repoRoot, requireTool, run, scratchDir } from '../../testbed/tools.js';
import { commitPolicy } from './helpers.js';

test('mmapThreshold reads the threshold as glibc does; mallocTuned wants it fixed between 4 and 32 KiB', () => {
  assert.is(MALLOC_TUNABLE, 'glibc.malloc.mmap_threshold=32768');
  assert.is(mmapThreshold({}), undefined);
  assert.is(mmapThreshold({ GLIBC_TUNABLES: MALLOC_TUNABLE }), 32768);
  assert.is(mmapThreshold({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=0x8000' }), 32768);
  // The last one counts, as in glibc.
  assert.is(mmapThreshold({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=1048576:glibc.malloc.mmap_threshold=16384' }), 16384);
  // glibc's older variable, and GLIBC_TUNABLES over it.
  assert.is(mmapThreshold({ MALLOC_MMAP_THRESHOLD_: '8192' }), 8192);
  assert.is(mmapThreshold({ MALLOC_MMAP_THRESHOLD_: '8192', GLIBC_TUNABLES: MALLOC_TUNABLE }), 32768);
  // What glibc does not read as a size, or a variable newer glibc ignores whole.
  assert.ok(Number.isNaN(mmapThreshold({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=32k' })!));
  assert.ok(Number.isNaN(mmapThreshold({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=' })!));
  assert.ok(Number.isNaN(mmapThreshold({ GLIBC_TUNABLES: `glibc.malloc.arena_max=2=3:${MALLOC_TUNABLE}` })!));
  // A name that merely ends like it is another tunable.
  assert.is(mmapThreshold({ GLIBC_TUNABLES: 'xglibc.malloc.mmap_threshold=1' }), undefined);
  assert.is(mallocTuned({ GLIBC_TUNABLES: MALLOC_TUNABLE }), true);
  assert.is(mallocTuned({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=4096' }), true);
  assert.is(mallocTuned({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }), false, '64 KiB blocks would still grow the heap');
  assert.is(mallocTuned({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=32' }), false, 'every allocation mapped');
  assert.is(mallocTuned({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=32k' }), false);
  assert.is(mallocTuned({}), false);
  // What serve logs: nothing when tuned, else what is set and how to set it.
  assert.is(mallocHint({ GLIBC_TUNABLES: MALLOC_TUNABLE }), undefined);
  assert.match(mallocHint({})!, /^GLIBC_TUNABLES does not set glibc\.malloc\.mmap_threshold: .* set GLIBC_TUNABLES=glibc\.malloc\.mmap_threshold=32768 in its environment/);
  assert.match(mallocHint({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536', MALLOC_MMAP_THRESHOLD_: '8192' })!, /^glibc's mmap threshold is not fixed between 4 and 32 KiB \(GLIBC_TUNABLES=glibc\.malloc\.mmap_threshold=65536, MALLOC_MMAP_THRESHOLD_=8192\): /);
});

test('withMallocTuning adds the threshold to GLIBC_TUNABLES and keeps other tunables; an operator-set threshold stands; withoutMallocTuning clears them', () => {
  assert.is(withMallocTuning({ PATH: '/bin' }).GLIBC_TUNABLES, MALLOC_TUNABLE);
  assert.is(withMallocTuning({ PATH: '/bin' }).PATH, '/bin');
  assert.is(withMallocTuning({ GLIBC_TUNABLES: '' }).GLIBC_TUNABLES, MALLOC_TUNABLE);
  assert.is(withMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, `glibc.malloc.arena_max=2:${MALLOC_TUNABLE}`);
  assert.is(withMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }).GLIBC_TUNABLES, 'glibc.malloc.mmap_threshold=65536');
  assert.equal(withMallocTuning({ MALLOC_MMAP_THRESHOLD_: '16384' }), { MALLOC_MMAP_THRESHOLD_: '16384' });
  const env = { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' };
  withMallocTuning(env);
  assert.is(env.GLIBC_TUNABLES, 'glibc.malloc.arena_max=2', 'the caller’s object is not changed');
  assert.equal(withoutMallocTuning({ PATH: '/bin', GLIBC_TUNABLES: MALLOC_TUNABLE, MALLOC_MMAP_THRESHOLD_: '1', MALLOC_TOP_PAD_: '1', MALLOCX: 'kept' }), { PATH: '/bin', MALLOCX: 'kept' });
});

test('the systemd unit sets it', () => {
  const unit = readFileSync(join(repoRoot, 'examples/virt-offload.service'), 'utf8');
  assert.ok(unit.split('\n').includes(`Environment=GLIBC_TUNABLES=${MALLOC_TUNABLE}`), 'examples/virt-offload.service has no Environment=GLIBC_TUNABLES line');
});

/** Resident anonymous memory a node process keeps after 320 MiB passed through 64 KiB buffers (an upload's reads and payloads), collected. */
function keptAfterChurn(env: NodeJS.ProcessEnv): number {
  const script = `
    const { readFileSync } = require('node:fs');
    const rss = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
    (async () => {
      const before = rss();
      for (let i = 0; i < 40; i++) {
        const held = [];
        for (let j = 0; j < 128; j++) held.push(Buffer.allocUnsafe(65512).fill(j));
        await new Promise((r) => setImmediate(r));
      }
      gc();
      await new Promise((r) => setTimeout(r, 100));
      gc();
      process.stdout.write(String(rss() - before));
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { env, encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  return Number(r.stdout);
}

test('with the tunable, memory that 64 KiB buffers passed through goes back to the kernel; without it, the heap keeps it', () => {
  const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
  assert.ok(glibc !== undefined, 'this node does not run on glibc: the daemon is meant for a glibc host (Debian)');
  const untouched = withoutMallocTuning(process.env);
  const untuned = keptAfterChurn(untouched);
  const tuned = keptAfterChurn(withMallocTuning(untouched));
  // Measured here (glibc 2.36, node 20): ~33 MB kept untuned, ~9.5 MB tuned (V8's own heap).
  assert.ok(untuned > tuned + 12, `glibc ${glibc}: untuned ${untuned.toFixed(1)} MB kept, tuned ${tuned.toFixed(1)} MB: the setting no longer makes the difference it is there for`);
});

test('serve as the testbed starts it (the unit\'s environment): it has the tunable, status says so, nothing is logged about it', async () => {
  requireTool('git', 'git');
  const scratch = scratchDir('vo-malloc-');
  const repo = join(scratch.dir, 'policy');
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  commitPolicy(repo, { 'tool.policy': `binary tool\nvms all\nversion 1 approved sha256:${'ab'.repeat(32)}\n` }, 'approve tool');
  const serve = await startServe({ repo, store: join(scratch.dir, 'store'), auditLog: join(scratch.dir, 'audit.jsonl'), runDir: join(scratch.dir, 'run') });
  try {
    // startServe runs node under setpriv, which execs it: the same pid.
    const environ = readFileSync(`/proc/${serve.pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.some((e) => e === `GLIBC_TUNABLES=${MALLOC_TUNABLE}` || (e.startsWith('GLIBC_TUNABLES=') && e.endsWith(`:${MALLOC_TUNABLE}`))), environ.filter((e) => e.startsWith('GLIBC')).join(' '));
    const status = await serve.control({ cmd: 'status' });
    const memory = status.memory as { mallocTuned: boolean; mmapThresholdBytes: number | null };
    assert.is(memory.mallocTuned, true);
    if (mmapThreshold(process.env) === undefined) assert.is(memory.mmapThresholdBytes, 32768);
    assert.not.ok(serve.logs.some((l) => /GLIBC_TUNABLES|mmap threshold/.test(String(l.message))), JSON.stringify(serve.logs));
  } finally {
    await serve.stop();
    scratch.cleanup();
  }
});

test.run();
