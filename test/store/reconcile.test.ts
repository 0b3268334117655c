// reconcile(store, snapshot) with snapshots built from policy text by the real policy core:
// approved versions installed, superseded/revoked/unlisted/VM-less ones removed, a successor
// installed (here: from a real xdelta3 VCDIFF patch against the installed base) before its
// predecessor is removed, every change logged.
import { readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openFileReader } from '../../lib/io/index.js';
import { bufferReader, type ByteReader } from '../../lib/measure/index.js';
import { applyVcdiff } from '../../lib/patch/index.js';
import { buildSnapshotOrThrow, type PolicySnapshot } from '../../lib/policy/index.js';
import { installFile, list, open, openStore, reconcile, verify, type ReconcileRecord, type Store } from '../../lib/store/index.js';
import { scratchDir, vcdiffDelta } from '../../testbed/tools.js';
import { hexOf, writeScript } from './helpers.js';

const { dir, cleanup } = scratchDir('vo-reconcile-');
test.after(cleanup);

const lines = (...ls: string[]): string => `${ls.join('\n')}\n`;
function snapshot(files: Record<string, string>, commit = 'c0ffee'): PolicySnapshot {
  return buildSnapshotOrThrow(Object.entries(files).map(([path, text]) => ({ path, text })), { commit });
}

interface Scripts {
  [name: string]: { path: string; m: string };
}
const s: Scripts = {};
async function script(name: string, body: string): Promise<void> {
  const path = join(dir, `${name}.sh`);
  s[name] = { path, m: await writeScript(path, body) };
}

/** Sources from a fixed set of files; records which measurements were asked for. */
function fileSources(names: string[], asked: string[] = []) {
  return (measurement: string): ByteReader | undefined => {
    asked.push(measurement);
    const hit = names.map((n) => s[n]!).find((x) => x.m === measurement);
    return hit === undefined ? undefined : openFileReader(hit.path);
  };
}

const installedNames = (store: Store) => list(store).map((o) => `${o.manifest?.name} ${o.manifest?.version}`);

test.before(async () => {
  // tool 1.1 is tool 1.0 with a changed line: a small delta.
  const filler = Array.from({ length: 400 }, (_, i) => `# line ${i}: some text that stays the same between versions`).join('\n');
  await script('tool10', `${filler}\necho tool 1.0`);
  await script('tool11', `${filler}\necho tool 1.1, fixed`);
  await script('keep', 'echo keep');
  await script('keep2', 'echo keep 2');
  await script('bad', 'echo bad');
  await script('gone', 'echo gone');
  await script('novm', 'echo novm');
});

test('approved versions are installed; revoked, unlisted and VM-less ones removed; each change logged', async () => {
  const store = openStore(join(dir, 'store1'), { create: true });
  for (const n of ['bad', 'gone', 'novm']) await installFile(store, { measurement: s[n]!.m, name: n, version: '0' }, s[n]!.path);
  const snap1 = snapshot({
    'groups.policy': lines('group builders vm:b1'),
    'tool.policy': lines('binary tool', 'vms all', `version 1.0 approved ${s.tool10!.m}`),
    'keep.policy': lines('binary keep', 'vms group:builders', `version 1 approved ${s.keep!.m}`),
    'bad.policy': lines('binary bad', 'vms all', `version 0 revoked reason="leaks secrets" ${s.bad!.m}`),
    'novm.policy': lines('binary novm', `version 0 approved ${s.novm!.m}`),
  });
  const log: ReconcileRecord[] = [];
  const summary = await reconcile(store, snap1, { log: (r) => log.push(r), sources: fileSources(['tool10', 'keep']) });
  assert.equal(summary.installed.sort(), [s.tool10!.m, s.keep!.m].sort());
  assert.equal(summary.removed.sort(), [s.bad!.m, s.gone!.m, s.novm!.m].sort());
  assert.equal(summary.failed, []);
  // JSON-able records, installs first.
  assert.equal(JSON.parse(JSON.stringify(log)), log);
  assert.equal(
    log.map((r) => [r.action, r.name, r.version, r.reason, r.commit]),
    [
      ['install', 'keep', '1', 'approved (installed)', 'c0ffee'],
      ['install', 'tool', '1.0', 'approved (installed)', 'c0ffee'],
      ...[
        ['uninstall', 'bad', '0', 'revoked: leaks secrets', 'c0ffee'],
        ['uninstall', 'gone', '0', 'not in the policy', 'c0ffee'],
        ['uninstall', 'novm', '0', 'approved for no VM', 'c0ffee'],
      ].sort((a, b) => (s[a[1]!]!.m < s[b[1]!]!.m ? -1 : 1)),
    ],
  );
  assert.equal(installedNames(store).sort(), ['keep 1', 'tool 1.0']);
  assert.ok((await verify(store)).ok);

  // Again: nothing to do, nothing logged, sources not even asked.
  const asked: string[] = [];
  const again = await reconcile(store, snap1, { log: (r) => log.push(r), sources: fileSources(['tool10', 'keep'], asked) });
  assert.is(log.length, 5);
  assert.equal(again.kept.sort(), [s.tool10!.m, s.keep!.m].sort());
  assert.equal(asked, []);
});

test('an update: the successor (built from a VCDIFF patch on the installed base) is installed before the base is removed', async () => {
  const store = openStore(join(dir, 'store2'), { create: true });
  await installFile(store, { measurement: s.tool10!.m, name: 'tool', version: '1.0' }, s.tool10!.path);
  const delta = join(dir, 'tool.vcdiff');
  vcdiffDelta(s.tool10!.path, s.tool11!.path, delta);
  assert.ok(readFileSync(delta).length < readFileSync(s.tool11!.path).length / 4, 'a real delta, not the whole file');

  const snap2 = snapshot({ 'tool.policy': lines('binary tool', 'vms all', `version 1.0 superseded by=1.1 ${s.tool10!.m}`, `version 1.1 approved ${s.tool11!.m}`) }, 'beef');
  const log: ReconcileRecord[] = [];
  let baseWasInstalled = false;
  const summary = await reconcile(store, snap2, {
    log: (r) => log.push(r),
    // Bytes for 1.1: the patch applied to the installed 1.0, read through the store's verified fd.
    sources: async (measurement, entry) => {
      assert.is(measurement, s.tool11!.m);
      assert.is(entry.version, '1.1');
      const base = await open(store, s.tool10!.m);
      baseWasInstalled = true;
      try {
        const bytes = new Uint8Array(base.size);
        readSync(base.fd, bytes, 0, base.size, 0);
        return bufferReader(applyVcdiff(bytes, readFileSync(delta)));
      } finally {
        base.close();
      }
    },
  });
  assert.ok(baseWasInstalled);
  assert.equal(log.map((r) => [r.action, r.version, r.reason]), [
    ['install', '1.1', 'approved (installed)'],
    ['uninstall', '1.0', 'superseded by 1.1'],
  ]);
  assert.equal([summary.installed, summary.removed], [[s.tool11!.m], [s.tool10!.m]]);
  assert.equal(readFileSync(join(store.root, 'objects/sha256', hexOf(s.tool11!.m))), readFileSync(s.tool11!.path));
  assert.equal(installedNames(store), ['tool 1.1']);
  assert.ok((await verify(store)).ok);
});

test('a successor whose bytes are wrong or missing: logged, and the superseded version stays until it is installed', async () => {
  const store = openStore(join(dir, 'store3'), { create: true });
  await installFile(store, { measurement: s.keep!.m, name: 'keep', version: '1' }, s.keep!.path);
  await installFile(store, { measurement: s.bad!.m, name: 'bad', version: '0' }, s.bad!.path);
  const snap3 = snapshot({
    'keep.policy': lines('binary keep', 'vms all', `version 1 superseded by=2 ${s.keep!.m}`, `version 2 approved ${s.keep2!.m}`),
    'bad.policy': lines('binary bad', 'vms all', `version 0 revoked reason="r" ${s.bad!.m}`),
  });
  const log: ReconcileRecord[] = [];
  // The "bytes of keep 2" offered are some other file's: install refuses them.
  const wrong = await reconcile(store, snap3, { log: (r) => log.push(r), sources: () => openFileReader(s.gone!.path) });
  assert.equal(log.map((r) => r.action), ['install-failed', 'uninstall']);
  assert.ok(log[0]!.reason.includes(s.gone!.m) && log[0]!.reason.includes(s.keep2!.m), log[0]!.reason);
  assert.equal(wrong.failed.map((f) => [f.measurement, f.action]), [[s.keep2!.m, 'install']]);
  assert.equal(wrong.retained, [s.keep!.m]);
  assert.equal(installedNames(store), ['keep 1']);
  // No bytes at all: unavailable, still retained; a gc-style pass removes it.
  const none = await reconcile(store, snap3, { log: (r) => log.push(r) });
  assert.equal([none.unavailable, none.retained], [[s.keep2!.m], [s.keep!.m]]);
  const gc = await reconcile(store, snap3, { log: (r) => log.push(r), keepUntilSuccessor: false });
  assert.equal(gc.removed, [s.keep!.m]);
  assert.equal(log.slice(2).map((r) => [r.action, r.name, r.version, r.reason]), [['uninstall', 'keep', '1', 'superseded by 2']]);
  assert.equal(list(store), []);
  // Bytes arrive later: installed.
  const later = await reconcile(store, snap3, { log: (r) => log.push(r), sources: fileSources(['keep2']) });
  assert.equal(later.installed, [s.keep2!.m]);
  assert.ok((await verify(store)).ok);
});

test('a measurement re-listed under another version is relabelled without reading bytes', async () => {
  const store = openStore(join(dir, 'store4'), { create: true });
  await installFile(store, { measurement: s.keep!.m, name: 'keep', version: '1' }, s.keep!.path);
  const log: ReconcileRecord[] = [];
  const asked: string[] = [];
  const r = await reconcile(store, snapshot({ 'keeper.policy': lines('binary keeper', 'vms all', `version 1.0.0 approved ${s.keep!.m}`) }), { log: (x) => log.push(x), sources: fileSources([], asked) });
  assert.equal(asked, []);
  assert.equal(r.installed, [s.keep!.m]);
  assert.equal(log.map((x) => [x.action, x.name, x.version, x.reason]), [['install', 'keeper', '1.0.0', 'approved (manifest-updated)']]);
  assert.equal(installedNames(store), ['keeper 1.0.0']);
});

test.run();
