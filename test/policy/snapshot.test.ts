// buildSnapshot: cross-file rules, the resolved index, immutability, and the example
// repository in policies/ (which must always build).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildSnapshot, buildSnapshotOrThrow, DEFAULT_LIMITS, PolicyError, tryBuildSnapshot } from '../../lib/policy/index.js';
import { repoRoot } from '../../testbed/tools.js';
import { buildErrors, lines, m, snap, sources } from './helpers.js';

const GROUPS = lines('group web vm:web-1 vm:web-2', 'group ops uuid:6F1C2A9E-3B7D-4E58-9A0C-1D2E3F405162 group:web');

test('index: every version of every binary, resolved scope, limits and interpreter', () => {
  const s = snap(
    {
      'groups.policy': GROUPS,
      'b/tool.policy': lines('binary tool', 'limits wall=1m', 'vms group:ops vm:extra', `version 1 superseded by=2 ${m(1)}`, `version 2 superseded by=3 ${m(2)}`, `version 3 approved ${m(3)} ${m(3, 'blake3')}`),
      'b/old.policy': lines('binary old', 'interpreter wasi', 'vms all', `version 0.1 revoked reason="bad" ${m(9)}`),
    },
    { commit: 'abc123', loadedAt: '2024-01-01T00:00:00Z' },
  );
  assert.is(s.commit, 'abc123');
  assert.is(s.loadedAt, '2024-01-01T00:00:00Z');
  assert.equal(s.files, ['b/old.policy', 'b/tool.policy', 'groups.policy']);
  assert.equal([...s.binaries.keys()], ['old', 'tool']);
  assert.equal([...s.groups.keys()], ['ops', 'web']);
  assert.is(s.index.size, 5);
  const e1 = s.index.get(m(1))!;
  assert.equal(
    { name: e1.name, version: e1.version, status: e1.status, supersededBy: e1.supersededBy, replacement: e1.replacement, file: e1.file, line: e1.line },
    { name: 'tool', version: '1', status: 'superseded', supersededBy: '2', replacement: '3', file: 'b/tool.policy', line: 4 },
  );
  assert.equal(e1.limits, { ...DEFAULT_LIMITS, wallMs: 60_000 });
  assert.equal(e1.interpreter, { kind: 'none' });
  assert.is(e1.scope.allVms, false);
  assert.equal([...e1.scope.names].sort(), ['extra', 'web-1', 'web-2']);
  assert.equal([...e1.scope.uuids], ['6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162']);
  assert.is(s.index.get(m(3, 'blake3'))!.version, '3');
  assert.is(s.index.get(m(3))!.status, 'approved');
  const old = s.index.get(m(9))!;
  assert.equal([old.status, old.reason, old.scope.allVms, old.interpreter.kind, old.limits], ['revoked', 'bad', true, 'wasi', DEFAULT_LIMITS]);
  assert.equal(s.binaries.get('tool')!.vms, ['group:ops', 'vm:extra']);
  assert.equal([...s.binaries.get('tool')!.versions.keys()], ['1', '2', '3']);
  // Entries of one binary share one scope object (memory stays flat with many versions).
  assert.ok(s.index.get(m(1))!.scope === s.index.get(m(3))!.scope);
});

test('a binary with no vms line may run nowhere; a chain ending in a revocation has no replacement', () => {
  const s = snap({ 'x.policy': lines('binary x', `version 1 superseded by=2 ${m(1)}`, `version 2 revoked reason="r" ${m(2)}`) });
  const e = s.index.get(m(1))!;
  assert.equal([e.scope.allVms, e.scope.names.size, e.scope.uuids.size, e.replacement], [false, 0, 0, undefined]);
});

test('the snapshot is deeply frozen: objects, arrays, maps and sets refuse changes', () => {
  const s = snap({ 'groups.policy': GROUPS, 'tool.policy': lines('binary tool', 'vms group:web', `version 1 approved ${m(1)}`) });
  const e = s.index.get(m(1))!;
  const attempts: Array<() => unknown> = [
    () => ((s as { commit: unknown }).commit = 'x'),
    () => (s.index as Map<string, unknown>).set(m(2), e),
    () => (s.index as Map<string, unknown>).delete(m(1)),
    () => (s.index as Map<string, unknown>).clear(),
    () => (s.index as unknown as { put(k: string, v: unknown): void }).put(m(2), e),
    () => (s.binaries.get('tool')!.versions as unknown as { put(k: string, v: unknown): void }).put('9', e),
    () => (s.binaries as Map<string, unknown>).set('y', 1),
    () => ((e as { status: string }).status = 'approved'),
    () => ((e.limits as { wallMs: number }).wallMs = 1),
    () => (e.scope.names as Set<string>).add('intruder'),
    () => ((e.scope as { allVms: boolean }).allVms = true),
    () => (s.files as string[]).push('x'),
    () => (s.binaries.get('tool')!.versions as Map<string, unknown>).set('2', 1),
    () => (s.binaries.get('tool')!.versions.get('1')!.measurements as string[]).push(m(5)),
    () => (s.groups.get('web')!.members as unknown[]).push(1),
    () => ((s.groups.get('web')!.members[0] as { value: string }).value = 'x'),
  ];
  for (const [i, attempt] of attempts.entries()) assert.throws(attempt, (err: unknown) => err instanceof TypeError, `attempt ${i}`);
  assert.is(s.index.get(m(1))!.scope.names.has('intruder'), false);
});

test('the snapshot serializes to JSON with its maps and sets', () => {
  const s = snap({ 'tool.policy': lines('binary tool', 'vms vm:a', `version 1 approved ${m(1)}`) });
  const json = JSON.parse(JSON.stringify(s)) as { index: Record<string, { scope: { names: string[] } }> };
  assert.equal(json.index[m(1)]!.scope.names, ['a']);
});

// Each row: files, then the exact errors expected (file:line: detail).
const CROSS_FILE: ReadonlyArray<{ name: string; files: Record<string, string>; expect: string[] }> = [
  {
    name: 'measurement under two names',
    files: { 'a.policy': lines('binary a', `version 1 approved ${m(1)}`), 'b.policy': lines('binary b', '', `version 7 approved ${m(1)}`) },
    expect: [`b.policy:3: version 7: ${m(1)} is already listed for a 1 at a.policy:2`],
  },
  {
    name: 'measurement under two versions of one binary',
    files: { 'a.policy': lines('binary a', `version 1 approved ${m(1)}`, `version 2 approved ${m(1)}`) },
    expect: ['a.policy:3: version 2: ' + m(1) + ' is already listed for version 1 (line 2)'],
  },
  {
    name: 'binary name in two files',
    files: { 'x/a.policy': lines('binary a', `version 1 approved ${m(1)}`), 'y/a.policy': lines('# again', 'binary a', `version 2 approved ${m(2)}`) },
    expect: ['y/a.policy:2: binary a is already defined at x/a.policy:1'],
  },
  {
    name: 'group defined in two files',
    files: { 'g1.policy': 'group web vm:a\n', 'g2.policy': '\ngroup web vm:b\n' },
    expect: ['g2.policy:2: group web is already defined at g1.policy:1'],
  },
  {
    name: 'vms names an undefined group',
    files: { 'a.policy': lines('binary a', 'vms vm:x group:nope', `version 1 approved ${m(1)}`) },
    expect: ['a.policy:2: vms: group:nope is not defined'],
  },
  {
    name: 'group names an undefined group',
    files: { 'groups.policy': lines('group web vm:a group:nope') },
    expect: ['groups.policy:1: group web: group:nope is not defined'],
  },
  {
    name: 'groups nest in a loop across files',
    files: { 'g1.policy': lines('group a vm:x group:b'), 'g2.policy': lines('group b group:c', 'group c group:a') },
    expect: ['g1.policy:1: group a: groups nest in a loop (a → b → c → a)'],
  },
  {
    name: 'group contains itself',
    files: { 'g.policy': lines('group a vm:x', 'group me group:me') },
    expect: ['g.policy:2: group me: groups nest in a loop (me → me)'],
  },
];

for (const row of CROSS_FILE) {
  test(`cross-file: ${row.name}`, () => {
    assert.equal(buildErrors(row.files), row.expect);
  });
}

test('the same path given twice is an error; errors are sorted by file and line', () => {
  const r = buildSnapshot([
    { path: 'z.policy', text: 'bogus\n' },
    { path: 'a.policy', text: 'ok-not\n\nbogus\n' },
    { path: 'a.policy', text: '' },
  ]);
  assert.is(r.ok, false);
  if (r.ok) return;
  assert.equal(r.errors.map((e) => `${e.file}:${e.line}`), ['a.policy:0', 'a.policy:1', 'a.policy:3', 'z.policy:1']);
  assert.match(r.errors[0]!.message, 'a.policy: file is given twice');
});

test('parse errors and cross-file errors are reported together; nothing is built', () => {
  const files = { 'a.policy': lines('binary a', 'vms group:missing', `version 1 aproved ${m(1)}`), 'b.policy': lines('binary b', `version 1 approved ${m(2)}`) };
  assert.equal(buildErrors(files).map((e) => e.split(': ')[0]), ['a.policy:2', 'a.policy:3']);
  assert.is(tryBuildSnapshot(sources(files)), undefined);
  try {
    buildSnapshotOrThrow(sources(files));
    assert.unreachable('should throw');
  } catch (err) {
    assert.ok(err instanceof PolicyError);
    assert.is(err.errors.length, 2);
    assert.match(err.message, 'the policy has 2 errors');
    assert.equal((err.toJSON() as { errors: unknown[] }).errors.length, 2);
  }
});

test('a group whose line has an error still exists for references (no cascade)', () => {
  const errors = buildErrors({ 'groups.policy': lines('group web vm:ok vm:-bad'), 'a.policy': lines('binary a', 'vms group:web', `version 1 approved ${m(1)}`) });
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, "groups.policy:1: group web: bad domain name in 'vm:-bad'");
});

test('input order does not matter: same files, same snapshot', () => {
  const files = { 'groups.policy': GROUPS, 'a.policy': lines('binary a', 'vms group:ops', `version 1 approved ${m(1)}`), 'b.policy': lines('binary b', 'vms all', `version 1 approved ${m(2)}`) };
  const forward = buildSnapshotOrThrow(sources(files));
  const backward = buildSnapshotOrThrow(sources(files).reverse());
  assert.equal(JSON.stringify(forward), JSON.stringify(backward));
});

test('deep group nesting resolves without recursion; a long supersede chain stays linear', () => {
  const depth = 2000;
  const groupLines = Array.from({ length: depth }, (_, i) => `group g${i} vm:v${i}${i + 1 < depth ? ` group:g${i + 1}` : ''}`);
  const s = snap({ 'groups.policy': lines(...groupLines) });
  assert.is(s.groups.get('g0')!.scope.names.size, depth);
  assert.is(s.groups.get(`g${depth - 1}`)!.scope.names.size, 1);
  const n = 20_000;
  const versions = Array.from({ length: n }, (_, i) => (i + 1 < n ? `version ${i} superseded by=${i + 1} ${m(i + 1)}` : `version ${i} approved ${m(i + 1)}`));
  const started = performance.now();
  const big = snap({ 'x.policy': lines('binary x', ...versions) });
  assert.ok(performance.now() - started < 2000);
  assert.is(big.index.get(m(1))!.replacement, String(n - 1));
});

test('group expansion is bounded', () => {
  // 2000 VMs in one group, nested 2100 levels deep: 4.2M memberships, over the bound.
  const vms = Array.from({ length: 2000 }, (_, i) => `vm:v${i}`).join(' ');
  const chain = Array.from({ length: 2100 }, (_, i) => `group c${i} group:c${i + 1}`);
  const errors = buildErrors({ 'groups.policy': lines(...chain, `group c2100 ${vms}`) });
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, 'VM groups expand to more than 4000000 memberships');
});

test('group expansion work is bounded too, repeats counted: parents that each list the same large groups', () => {
  // 800 groups of the same 500 VMs, and 800 parents listing all of them: few memberships
  // (500 per parent), but 320 M steps of expansion; unbounded this takes tens of seconds.
  const vms = Array.from({ length: 500 }, (_, i) => `vm:v${i}`).join(' ');
  const groups = Array.from({ length: 800 }, (_, i) => `group g${i} ${vms}`);
  const all = Array.from({ length: 800 }, (_, i) => `group:g${i}`).join(' ');
  const parents = Array.from({ length: 800 }, (_, i) => `group p${i} ${all}`);
  const errors = buildErrors({ 'groups.policy': lines(...groups, ...parents) });
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, 'or take more than 256000000 steps counting repeats');
});

test('the example repository in policies/ builds, with superseded and revoked versions', () => {
  const root = join(repoRoot, 'policies');
  const files: { path: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.policy')) files.push({ path: relative(root, full), text: readFileSync(full, 'utf8') });
    }
  };
  walk(root);
  const s = buildSnapshotOrThrow(files, { commit: 'example' });
  assert.ok(s.binaries.size >= 3);
  const statuses = new Set([...s.index.values()].map((e) => e.status));
  assert.equal([...statuses].sort(), ['approved', 'revoked', 'superseded']);
  const hello = s.binaries.get('hello')!;
  assert.ok(hello.scope.names.has('build-01'));
  assert.is(hello.scope.uuids.size, 2);
});

test('errors are bounded for the whole repository, not only per file: the files after 10 000 errors are not read', () => {
  // 40 files of 2000 bad lines: 1001 errors each (the per-file limit) would be 40 040.
  const files = Array.from({ length: 40 }, (_, i) => ({ path: `f${String(i).padStart(2, '0')}.policy`, text: 'bogus\n'.repeat(2000) }));
  const r = buildSnapshot(files);
  assert.is(r.ok, false);
  if (r.ok) return;
  assert.ok(r.errors.length <= 10_000 + 1001 + 1, `${r.errors.length} errors`);
  assert.ok(r.errors.some((e) => /^f10\.policy: too many errors in the repository; stopped after 10010, 30 files from here on not checked$/.test(e.message)), r.errors.at(-1)!.message);
});

test.run();
