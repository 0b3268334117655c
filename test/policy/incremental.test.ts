// Incremental rebuilds: after any sequence of edits (files changed, added, removed, broken,
// repaired), IncrementalSnapshots gives exactly what buildSnapshot gives for the same files,
// and parses only the files that changed. Property-checked with fast-check; then the loader's
// PolicyReloader against a real git repository (work tree and revisions).
import { join } from 'node:path';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildSnapshot, IncrementalSnapshots, PolicyError, type PolicySource, type SnapshotResult } from '../../lib/policy/index.js';
import { loadPolicySnapshot, loadPolicySnapshotAtRevision, PolicyReloader } from '../../lib/policy/loader.js';
import { GROUPS, helloV1, makeRepo, scratchDir } from './loader-repo.js';
import { lines, m } from './helpers.js';

/** The whole outcome as text: every entry, binary, group and file of a snapshot, or every error. */
function outcome(result: SnapshotResult): string {
  return result.ok ? JSON.stringify(result.snapshot) : JSON.stringify(result.errors.map((e) => e.message));
}

// A small world, so that edits collide: few binaries and measurements, groups that come and
// go; most states build, some break a rule of one file or a rule across files.
const NAMES = ['a', 'b', 'c', 'd'];
const arbGroupsFile = fc
  .uniqueArray(fc.tuple(fc.constantFrom('g1', 'g2', 'g3'), fc.constantFrom('vm:x', 'vm:y', 'uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162', 'group:g3', 'vm:x', 'vm:y')), { selector: ([g]) => g, maxLength: 3 })
  .map((gs) => lines(...gs.map(([g, member]) => `group ${g} ${g === 'g3' && member === 'group:g3' ? 'vm:z' : member}`)));
const arbVersion = fc.record({
  status: fc.constantFrom('approved', 'approved', 'superseded', 'superseded', 'revoked reason="r"', 'superseded by=9'),
  digests: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 2 }),
  shared: fc.constantFrom(false, false, false, false, false, false, false, true),
});
const arbBinaryFile = (name: string, n: number) =>
  fc
    .record({
      vms: fc.constantFrom('vms all', 'vms group:g1', 'vms group:g2 vm:z', 'vms vm:z', '', 'vms group:nope'),
      versions: fc.array(arbVersion, { maxLength: 4 }),
      broken: fc.constantFrom(false, false, false, false, false, true),
    })
    .map(({ vms, versions, broken }) => ({
      path: `bin/${name}.policy`,
      text: lines(
        `binary ${name}`,
        ...(vms === '' ? [] : [vms]),
        ...versions.map((v, i) => {
          const status = v.status === 'superseded' ? (i + 1 < versions.length ? `superseded by=${i + 2}` : 'approved') : v.status;
          // Measurements of one binary are its own (n*100 + d), except a rare one shared by all.
          const digests = [...new Set(v.digests.map((d) => (v.shared ? 999 : n * 100 + i * 10 + d)))];
          return `version ${i + 1} ${status} ${digests.map((d) => m(d)).join(' ')}`;
        }),
        ...(broken ? ['limits wall=forever'] : []),
      ),
    }));
/** One state of the repository: path → text. */
const arbRepo = fc
  .tuple(arbGroupsFile, ...NAMES.map((n, i) => fc.option(arbBinaryFile(n, i + 1), { nil: undefined, freq: 4 })))
  .map(([groups, ...bins]) => {
    const files = new Map<string, string>([['groups.policy', groups]]);
    for (const b of bins) if (b !== undefined) files.set(b.path, b.text);
    return files;
  });

const asSources = (files: Map<string, string>): PolicySource[] => [...files].map(([path, text]) => ({ path, text }));

test('after any sequence of edits, an incremental build equals a full build, and parses only what changed', () => {
  let snapshots = 0;
  let resets = 0;
  let failures = 0;
  fc.assert(
    fc.property(fc.array(arbRepo, { minLength: 1, maxLength: 6 }), fc.boolean(), (states, useIds) => {
      const incremental = new IncrementalSnapshots();
      let before = new Map<string, string>();
      for (const files of states) {
        // Sometimes as the revision loader gives them: with blob ids (here: the text's own id).
        const sources = asSources(files).map((s) => (useIds ? { ...s, id: `id:${s.text}` } : s));
        const full = buildSnapshot(sources, { commit: 'c' });
        const inc = incremental.build(sources, { commit: 'c' });
        assert.is(outcome(inc), outcome(full));
        if (full.ok) snapshots++;
        else failures++;
        const changed = [...files].filter(([path, text]) => before.get(path) !== text).length;
        const { compiled, reused } = incremental.stats;
        // Only the changed files, unless this build started the cache afresh (then all).
        assert.ok(compiled === changed || compiled === files.size, `${compiled} compiled, ${changed} changed`);
        assert.equal(incremental.stats, { files: files.size, compiled, reused: files.size - compiled });
        if (compiled !== changed) resets++;
        before = files;
      }
    }),
    { numRuns: 300, seed: 7 },
  );
  // Both kinds of outcome are exercised (about 70 snapshots and 1000 failed builds with this seed).
  assert.ok(snapshots > 50 && failures > 100, `${snapshots} states built, ${failures} failed: the generator no longer exercises both`);
  assert.ok(resets < 100, `${resets} builds started afresh: the cache is hardly used`);
});

test('an id decides reuse when given: same text under a new id is parsed again, a path given twice is an error either way', () => {
  const inc = new IncrementalSnapshots();
  const text = lines('binary a', 'vms all', `version 1 approved ${m(1)}`);
  assert.ok(inc.build([{ path: 'a.policy', text, id: 'blob1' }]).ok);
  assert.ok(inc.build([{ path: 'a.policy', text, id: 'blob2' }]).ok);
  assert.is(inc.stats.compiled, 1);
  assert.ok(inc.build([{ path: 'a.policy', text }]).ok);
  assert.is(inc.stats.compiled, 1, 'a text without id is not matched against an id');
  const twice = inc.build([{ path: 'a.policy', text }, { path: 'a.policy', text }]);
  assert.equal(twice.ok ? [] : twice.errors.map((e) => e.message), ['a.policy: file is given twice']);
  assert.is(outcome(twice), outcome(buildSnapshot([{ path: 'a.policy', text }, { path: 'a.policy', text }])));
});

test('entries of a reused file belong to the new snapshot: the old snapshot is untouched and scopes follow the new groups', () => {
  const inc = new IncrementalSnapshots();
  const tool = { path: 'tool.policy', text: lines('binary tool', 'vms group:g', `version 1 approved ${m(1)}`) };
  const first = inc.build([{ path: 'groups.policy', text: lines('group g vm:one') }, tool]);
  const second = inc.build([{ path: 'groups.policy', text: lines('group g vm:two') }, tool]);
  assert.ok(first.ok && second.ok);
  assert.is(inc.stats.reused, 1);
  if (!first.ok || !second.ok) return;
  assert.equal([...first.snapshot.index.get(m(1))!.scope.names], ['one']);
  assert.equal([...second.snapshot.index.get(m(1))!.scope.names], ['two']);
  assert.ok(first.snapshot.index.get(m(1)) !== second.snapshot.index.get(m(1)));
});

test('many recompiles start the cache afresh (slabs stay bounded) without changing any result', () => {
  const inc = new IncrementalSnapshots();
  const files = (round: number): PolicySource[] =>
    Array.from({ length: 5 }, (_, i) => ({ path: `t${i}.policy`, text: lines(`binary t${i}`, 'vms all', `version ${i === round % 5 ? round : 0} approved ${m(i + 1)}`) }));
  const compiled: number[] = [];
  for (let round = 0; round < 20; round++) {
    const sources = files(round);
    assert.is(outcome(inc.build(sources)), outcome(buildSnapshot(sources)));
    compiled.push(inc.stats.compiled);
  }
  // 5 at first; then 1 or 2 per round (the file changed back and the one changed now), and a full 5 when the budget runs out.
  assert.is(compiled[0], 5);
  assert.ok(compiled.slice(1).every((n) => n === 5 || n <= 2), String(compiled));
  assert.ok(compiled.slice(1).includes(5), String(compiled));
});

const { dir: scratch, cleanup } = scratchDir('vo-incremental-');
test.after(cleanup);

test('PolicyReloader on a real repository: each load equals loadPolicySnapshot, and parses only changed files', () => {
  const repo = makeRepo(join(scratch, 'reload'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  for (let i = 0; i < 20; i++) repo.write(`binaries/t${i}.policy`, `binary t${i}\nvms all\nversion 1 approved ${m(100 + i)}\n`);
  const first = repo.commit('first');
  const reloader = new PolicyReloader(repo.dir);
  const same = (a: unknown, b: unknown) => assert.is(JSON.stringify(a), JSON.stringify(b));
  same(reloader.load({ loadedAt: 'x' }), loadPolicySnapshot(repo.dir, { loadedAt: 'x' }));
  assert.equal(reloader.stats, { files: 22, compiled: 22, reused: 0 });

  repo.write('binaries/t3.policy', `binary t3\nvms all\nversion 1 superseded by=2 ${m(103)}\nversion 2 approved ${m(203)}\n`);
  const second = repo.commit('t3 2');
  const s2 = reloader.load();
  same(s2, loadPolicySnapshot(repo.dir));
  assert.equal([s2.commit, reloader.stats.compiled, reloader.stats.reused], [second, 1, 21]);

  // A broken edit fails exactly as a full load does, and the next good load reuses what it can.
  repo.write('binaries/t4.policy', `binary t4\nversion 1 approved ${m(1)}\n`); // hello's measurement
  const full = errorOf(() => loadPolicySnapshot(repo.dir));
  assert.is(errorOf(() => reloader.load()), full);
  assert.match(full, /already listed for hello 1\.0/);
  repo.write('binaries/t4.policy', `binary t4\nvms all\nversion 1 approved ${m(104)}\n`);
  same(reloader.load(), loadPolicySnapshot(repo.dir));
  assert.is(reloader.stats.compiled, 1);

  // At revisions, files are matched by blob id (a text read from disk has none: all are parsed once).
  same(reloader.loadAtRevision(first), loadPolicySnapshotAtRevision(repo.dir, first));
  assert.is(reloader.stats.compiled, 22);
  same(reloader.loadAtRevision(second), loadPolicySnapshotAtRevision(repo.dir, second));
  assert.is(reloader.stats.compiled, 1, 't3 changed between the two; t4 is the same blob');
});

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof PolicyError) return err.message;
    throw err;
  }
  throw new Error('expected a PolicyError');
}

test.run();
