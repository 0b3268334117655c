// The daemon's --patch-dir: on reload, an approved version that is not installed is built from
// a VCDIFF delta (xdelta3, real) and the installed version it supersedes; deltas that do not
// apply, or that yield other bytes, are ignored (the old version is then retained, as without
// a patch directory). The whole flow with a guest is test/e2e/offload.test.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Daemon, startDaemon } from '../../lib/daemon/index.js';
import { measureFile } from '../../lib/io/index.js';
import { bufferReader } from '../../lib/measure/index.js';
import { install, list, openStore } from '../../lib/store/index.js';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';
import { commitPolicy } from './helpers.js';

const xdelta3 = requireTool('xdelta3', 'xdelta3');
requireTool('git', 'git');
requireTool('bwrap', 'bubblewrap');

async function fixture(dir: string, name: string, text: string): Promise<{ path: string; m: string; bytes: Buffer }> {
  const path = join(dir, name);
  const bytes = Buffer.from(text);
  writeFileSync(path, bytes);
  return { path, m: (await measureFile(path)).measurement, bytes };
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
    run(xdelta3, ['-e', '-A', '-S', 'none', '-n', '-s', other.path, v2.path, join(patches, 'b-other-base.vcdiff')]);
    run(xdelta3, ['-e', '-A', '-S', 'none', '-n', '-s', v1.path, v3.path, join(patches, 'c-to-v3.vcdiff')]);
    daemon = await startDaemon({ runDir: join(dir, 'run'), policyRepo: repo, storeDir, auditLog: join(dir, 'audit.jsonl'), sandbox: 'bwrap', patchDir: patches });
    const installed = () => list(openStore(storeDir)).map((o) => `${o.manifest?.name} ${o.manifest?.version} ${o.measurement}`).sort();

    commitPolicy(repo, { 'tool.policy': `binary tool\ninterpreter /bin/sh\nvms all\nversion 1 superseded by=2 ${v1.m}\nversion 2 approved ${v2.m}\n` }, 'tool 2');
    let r = await daemon.reload();
    assert.is(r.ok, true);
    assert.equal(installed(), [`tool 1 ${v1.m}`], 'no delta yields v2: v1 is retained as the base a patch may still need');

    run(xdelta3, ['-e', '-A', '-S', 'none', '-n', '-s', v1.path, v2.path, join(patches, 'd-1-to-2.vcdiff')]);
    r = await daemon.reload();
    assert.is(r.ok, true);
    assert.is(r.storeChanges, 2);
    assert.equal(installed(), [`tool 2 ${v2.m}`]);
  } finally {
    await daemon?.close();
    cleanup();
  }
});

test.run();
