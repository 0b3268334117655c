// GLIBC_TUNABLES for the daemon (lib/daemon/malloc-tuning.ts): the environment helpers, that
// the setting does what it is there for (memory that 64 KiB buffers passed through goes back
// to the kernel), and that `virt-offload serve` reports whether it runs with it.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MALLOC_TUNABLE, mallocTuned, withMallocTuning } from '../../lib/daemon/index.js';
import { startServe } from '../../testbed/offload-host.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';
import { commitPolicy } from './helpers.js';

test('withMallocTuning adds the threshold to GLIBC_TUNABLES, keeps other tunables, and leaves an operator-set threshold alone', () => {
  assert.is(MALLOC_TUNABLE, 'glibc.malloc.mmap_threshold=32768');
  assert.is(mallocTuned({}), false);
  assert.is(withMallocTuning({ PATH: '/bin' }).GLIBC_TUNABLES, MALLOC_TUNABLE);
  assert.is(withMallocTuning({ PATH: '/bin' }).PATH, '/bin');
  assert.is(withMallocTuning({ GLIBC_TUNABLES: '' }).GLIBC_TUNABLES, MALLOC_TUNABLE);
  assert.is(withMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, `glibc.malloc.arena_max=2:${MALLOC_TUNABLE}`);
  assert.is(withMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }).GLIBC_TUNABLES, 'glibc.malloc.mmap_threshold=65536');
  assert.is(mallocTuned({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536' }), true);
  // A name that merely ends like it is another tunable.
  assert.is(mallocTuned({ GLIBC_TUNABLES: 'xglibc.malloc.mmap_threshold=1' }), false);
  const env = { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' };
  withMallocTuning(env);
  assert.is(env.GLIBC_TUNABLES, 'glibc.malloc.arena_max=2', 'the caller’s object is not changed');
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
  const untouched = { ...process.env };
  delete untouched.GLIBC_TUNABLES;
  const untuned = keptAfterChurn(untouched);
  const tuned = keptAfterChurn(withMallocTuning(untouched));
  // Measured here: ~33 MB kept untuned, ~9.5 MB tuned (V8's own heap, not the buffers).
  assert.ok(tuned < 20, `tuned: ${tuned.toFixed(1)} MB kept`);
  assert.ok(untuned > tuned + 12, `untuned: ${untuned.toFixed(1)} MB kept, tuned ${tuned.toFixed(1)} MB: the test no longer sees what the setting changes`);
});

test('serve as the testbed starts it (the unit\'s environment): status says it is tuned, and nothing is logged about it', async () => {
  requireTool('git', 'git');
  const scratch = scratchDir('vo-malloc-');
  const repo = join(scratch.dir, 'policy');
  mkdirSync(repo);
  run('git', ['init', '-q', repo]);
  commitPolicy(repo, { 'tool.policy': `binary tool\nvms all\nversion 1 approved sha256:${'ab'.repeat(32)}\n` }, 'approve tool');
  const serve = await startServe({ repo, store: join(scratch.dir, 'store'), auditLog: join(scratch.dir, 'audit.jsonl'), runDir: join(scratch.dir, 'run') });
  try {
    const status = await serve.control({ cmd: 'status' });
    assert.is((status.memory as { mallocTuned: boolean }).mallocTuned, true);
    assert.not.ok(serve.logs.some((l) => /GLIBC_TUNABLES/.test(String(l.message))), JSON.stringify(serve.logs));
  } finally {
    await serve.stop();
    scratch.cleanup();
  }
});

test.run();
