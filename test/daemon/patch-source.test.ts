// The daemon's --patch-dir: on reload, an approved version that is not installed is built from
// a VCDIFF delta (xdelta3, real) and the installed version it supersedes; deltas that do not
// apply, or that yield other bytes, are ignored (the old version is then retained, as without
// a patch directory). The whole flow with a guest is test/e2e/offload.test.ts.
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Daemon, startDaemon } from '../../lib/daemon/index.js';
import { measureFile } from '../../lib/io/index.js';
import { bufferReader } from '../../lib/measure/index.js';
import { install, list, openStore } from '../../lib/store/index.js';
import { patchSource } from '../../lib/daemon/patch-source.js';
import type { PolicyEntry } from '../../lib/policy/index.js';
import { requireTool, run, scratchDir, vcdiffDelta } from '../../testbed/tools.js';
import { commitPolicy } from './helpers.js';

requireTool('xdelta3', 'xdelta3');
requireTool('git', 'git');
requireTool('bwrap', 'bubblewrap');

async function fixture(dir: string, name: string, text: string): Promise<{ path: string; m: string; bytes: Buffer }> {
  const path = join(dir, name);
  const bytes = Buffer.from(text);
  writeFileSync(path, bytes);
  return { path, m: (await measureFile(path)).measurement, bytes };
}

/** Versions 1 and 2 of a tool of `lines` lines (only the last differs), 1 installed in a fresh store; an empty patch directory. */
async function versionOneInstalled(dir: string, lines: number) {
  const v1 = await fixture(dir, 'v1', `#!/bin/sh\n${'echo "v1 line"\n'.repeat(lines)}`);
  const v2 = await fixture(dir, 'v2', `#!/bin/sh\n${'echo "v1 line"\n'.repeat(lines - 1)}echo v2\n`);
  const store = openStore(join(dir, 'store'), { create: true });
  await install(store, { measurement: v1.m, name: 'tool', version: '1' }, bufferReader(v1.bytes));
  const patches = join(dir, 'patches');
  mkdirSync(patches);
  return { v1, v2, store, patches };
}

test('a reload installs the successor from a delta against the installed version, then removes the old one; bad deltas are ignored', async () => {
  const { dir, cleanup } = scratchDir('vo-patch-src-');
  let daemon: Daemon | undefined;
  try {
    const body = (v: string) => `#!/bin/sh\n# tool version ${v}\n${'echo "a line of the tool"\n'.repeat(200)}echo "version ${v}"\n`;
    const v1 = await fixture(dir, 'v1', body('1'));
    const v2 = await fixture(dir, 'v2', body('2'));
    const v3 = await fixture(dir, 'v3', body('3'));
    // v2 shifted by a few bytes: a delta against it copies from offsets where v1 holds other bytes
    // (a delta that copies nothing, or copies what v1 also holds there, rightly rebuilds v2 from v1).
    const other = await fixture(dir, 'other', `#pad\n${body('2')}`);
    const repo = join(dir, 'policy');
    const patches = join(dir, 'patches');
    const storeDir = join(dir, 'store');
    mkdirSync(repo);
    mkdirSync(patches);
    run('git', ['init', '-q', repo]);
    commitPolicy(repo, { 'tool.policy': `binary tool\ninterpreter /bin/sh\nvms all\nversion 1 approved ${v1.m}\n` }, 'tool 1');
    await install(openStore(storeDir, { create: true }), { measurement: v1.m, name: 'tool', version: '1' }, bufferReader(v1.bytes));

    // Deltas that must not be used: garbage, one whose base is another file, one that yields v3.
    writeFileSync(join(patches, 'a-garbage.vcdiff'), Buffer.from('\xd6\xc3\xc4\x00 not a delta'));
    vcdiffDelta(other.path, v2.path, join(patches, 'b-other-base.vcdiff'));
    vcdiffDelta(v1.path, v3.path, join(patches, 'c-to-v3.vcdiff'));
    daemon = await startDaemon({ runDir: join(dir, 'run'), policyRepo: repo, storeDir, auditLog: join(dir, 'audit.jsonl'), sandbox: 'bwrap', patchDir: patches });
    const installed = () => list(openStore(storeDir)).map((o) => `${o.manifest?.name} ${o.manifest?.version} ${o.measurement}`).sort();

    commitPolicy(repo, { 'tool.policy': `binary tool\ninterpreter /bin/sh\nvms all\nversion 1 superseded by=2 ${v1.m}\nversion 2 approved ${v2.m}\n` }, 'tool 2');
    let r = await daemon.reload();
    assert.is(r.ok, true);
    assert.equal(installed(), [`tool 1 ${v1.m}`], 'no delta yields v2: v1 is retained as the base a patch may still need');

    vcdiffDelta(v1.path, v2.path, join(patches, 'd-1-to-2.vcdiff'));
    r = await daemon.reload();
    assert.is(r.ok, true);
    assert.is(r.storeChanges, 2);
    assert.equal(installed(), [`tool 2 ${v2.m}`]);
  } finally {
    await daemon?.close();
    cleanup();
  }
});

test('a directory of delta bombs: bounded work per call, the event loop served, tried pairs skipped, the named delta first; links and FIFOs are not read', async () => {
  const { dir, cleanup } = scratchDir('vo-patch-bomb-');
  try {
    const { v1, v2, store, patches } = await versionOneInstalled(dir, 100);
    const big = join(dir, 'big');
    writeFileSync(big, Buffer.alloc(1 << 20, 0x41));
    // Twelve tiny deltas that each decode to 1 MiB (the limit here), none of them v2.
    vcdiffDelta(v1.path, big, join(patches, 'bomb-00.vcdiff'));
    for (let i = 1; i < 12; i++) copyFileSync(join(patches, 'bomb-00.vcdiff'), join(patches, `bomb-${String(i).padStart(2, '0')}.vcdiff`));
    vcdiffDelta(v1.path, v2.path, join(patches, 'zz-real.vcdiff'));
    symlinkSync(join(patches, 'zz-real.vcdiff'), join(patches, 'aa-link.vcdiff'));
    run('mkfifo', [join(patches, 'ab-fifo.vcdiff')]);
    const warnings: string[] = [];
    const log = { error: () => {}, warn: (m: string) => warnings.push(m), info: () => {}, debug: () => {} };
    const source = patchSource({ dir: patches, store, log, maxBytes: (1 << 20) + 4096 });
    const entry = { name: 'tool', version: '2' } as unknown as PolicyEntry;
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      let got: unknown;
      let calls = 0;
      for (; calls < 10 && got === undefined; calls++) {
        const before = ticks;
        got = await source(v2.m, entry);
        assert.ok(ticks > before, 'timers ran while the deltas were tried');
      }
      // Four 1 MiB results per call at most: three calls for the twelve bombs, then the real one.
      assert.is(calls, 4);
      assert.ok(got !== undefined, 'the real delta was found in the end');
      assert.is(warnings.filter((w) => /without a match; the other deltas wait/.test(w)).length, 3);
      // Named after the measurement, it is tried first.
      copyFileSync(join(patches, 'zz-real.vcdiff'), join(patches, `${v2.m.slice('sha256:'.length)}.vcdiff`));
      warnings.length = 0;
      const fresh = patchSource({ dir: patches, store, log, maxBytes: (1 << 20) + 4096 });
      assert.ok((await fresh(v2.m, entry)) !== undefined);
      assert.equal(warnings, []);
    } finally {
      clearInterval(timer);
    }
  } finally {
    cleanup();
  }
});

test('a version approved by its blake3 measurement is built from a delta too', async () => {
  const { dir, cleanup } = scratchDir('vo-patch-b3-');
  try {
    const { v1, v2, store, patches } = await versionOneInstalled(dir, 50);
    vcdiffDelta(v1.path, v2.path, join(patches, 'd.vcdiff'));
    const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };
    const b3 = (await measureFile(v2.path, { algo: 'blake3' })).measurement;
    assert.match(b3, /^blake3:/);
    const got = await patchSource({ dir: patches, store, log: quiet, maxBytes: 1 << 20 })(b3, { name: 'tool', version: '2' } as unknown as PolicyEntry);
    assert.ok(got !== undefined, 'built and measured with blake3');
  } finally {
    cleanup();
  }
});

test.run();
