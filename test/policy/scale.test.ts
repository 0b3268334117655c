// What the large-repository work in parse.ts and snapshot.ts must not change: supersede
// links and replacements worked out in one walk, strings copied out of the file text, the
// public parse result's shape, and the duplicate checks that now share one map per block.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FrozenMap, FrozenSet, parsePolicyFile } from '../../lib/policy/index.js';
import { ownText } from '../../lib/policy/lexer.js';
import { parseOptions } from '../../lib/policy/parse.js';
import { buildErrors, lines, m, snap } from './helpers.js';

/** A small deterministic generator (tests must not flake). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** The replacement rule written the plain way: follow by= to the end; approved → it, else none. */
function expectedReplacement(statuses: Map<string, { status: string; by?: string }>, version: string): string | undefined {
  let cur = version;
  for (let steps = 0; steps <= statuses.size; steps++) {
    const v = statuses.get(cur)!;
    if (v.status === 'approved') return cur;
    if (v.status === 'revoked') return undefined;
    cur = v.by!;
  }
  throw new Error('loop');
}

test('superseded entries name by= and the approved end of the chain, for chains in any order', () => {
  const random = rng(7);
  for (let round = 0; round < 200; round++) {
    const n = 1 + Math.floor(random() * 12);
    // A random forest: each version either ends a chain (approved or revoked) or points at a
    // version that ends up nearer an end (a random permutation decides the order, so by=
    // points forwards and backwards in the file).
    const order = Array.from({ length: n }, (_, i) => i).sort(() => random() - 0.5);
    const statuses = new Map<string, { status: string; by?: string }>();
    const text: string[] = ['binary x', 'vms all'];
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      const ends = k === 0 || random() < 0.3;
      const spec = ends ? (random() < 0.7 ? { status: 'approved' } : { status: 'revoked' }) : { status: 'superseded', by: `v${order[Math.floor(random() * k)]!}` };
      statuses.set(`v${i}`, spec);
    }
    for (let i = 0; i < n; i++) {
      const spec = statuses.get(`v${i}`)!;
      const status = spec.status === 'superseded' ? `superseded by=${spec.by}` : spec.status === 'revoked' ? 'revoked reason="r"' : 'approved';
      text.push(`version v${i} ${status} ${m(round * 100 + i)}`);
    }
    const s = snap({ 'x.policy': lines(...text) });
    for (let i = 0; i < n; i++) {
      const e = s.index.get(m(round * 100 + i))!;
      const spec = statuses.get(`v${i}`)!;
      assert.is(e.status, spec.status);
      assert.is(e.supersededBy, spec.by, `round ${round} v${i}`);
      assert.is(e.replacement, spec.status === 'superseded' ? expectedReplacement(statuses, `v${i}`) : undefined, `round ${round} v${i}`);
      // by= and the replacement are the versions' own strings, shared with their entries.
      if (e.supersededBy !== undefined) assert.ok(s.binaries.get('x')!.versions.get(e.supersededBy)!.version === e.supersededBy);
    }
  }
});

test('duplicates within a block are still told apart: version twice, measurement twice, by= a failed line', () => {
  const errors = buildErrors({
    'x.policy': lines(
      'binary x',
      `version 1 approved ${m(1)}`,
      `version 2 approved ${m(1)}`, // measurement of version 1
      `version 1 approved ${m(3)}`, // version 1 again
      `version 2 approved ${m(4)}`, // 2 was read on line 3 (which failed): still a repeat
      `version 3 superseded by=2 ${m(5)}`, // 2 exists as a version (its line failed): no 'not a version' error
      `version 4 superseded by=9 ${m(6)}`,
    ),
  });
  assert.equal(errors, [
    `x.policy:3: version 2: ${m(1)} is already listed for version 1 (line 2)`,
    'x.policy:4: version 1: listed twice for binary x (first at line 2)',
    'x.policy:5: version 2: listed twice for binary x (first at line 3)',
    'x.policy:7: version 4: superseded by 9, which is not a version of binary x',
  ]);
});

test('repeats are found the same way in small blocks (scanned) and large ones (mapped)', () => {
  for (const n of [3, 11, 12, 13, 40]) {
    const versions = Array.from({ length: n }, (_, i) => `version v${i} approved ${m(i + 1)}`);
    // Early failed line, then repeats of a version, a measurement and the failed version at the end.
    versions.splice(1, 0, 'version failed approved sha256:nothex');
    versions.push(`version v1 approved ${m(1000)}`, `version w approved ${m(2)}`, `version failed approved ${m(1001)}`, `version z superseded by=failed ${m(1002)}`);
    const errors = buildErrors({ 'x.policy': lines('binary x', 'vms all', ...versions) });
    const at = n + 4; // line of the first appended version
    assert.equal(
      errors,
      [
        "x.policy:4: version failed: measurement 'sha256:nothex' must have exactly 64 lowercase hex digits after 'sha256:'",
        `x.policy:${at}: version v1: listed twice for binary x (first at line 5)`,
        `x.policy:${at + 1}: version w: ${m(2)} is already listed for version v1 (line 5)`,
        `x.policy:${at + 2}: version failed: listed twice for binary x (first at line 4)`,
      ],
      `n=${n}`,
    );
  }
});

test('a line of many measurements still finds a repeat (set past a few, scan below)', () => {
  for (const count of [2, 8, 9, 50]) {
    const ms = Array.from({ length: count }, (_, i) => m(i + 1));
    ms.push(m(count)); // the last one again
    const errors = buildErrors({ 'x.policy': lines('binary x', `version 1 approved ${ms.join(' ')}`) });
    assert.equal(errors, [`x.policy:2: version 1: ${m(count)} is listed twice on this line`]);
  }
});

test('plain version lines read from one match parse exactly as the general path reads them', () => {
  const random = rng(11);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const blank = [' ', '\t', '  ', ' \t '];
  const lead = ['', '', ' ', '\t', ' \t'];
  const keyword = ['version', 'version', 'version', 'versions', '"version"', 'Version', 'version#'];
  const versions = ['1.0', '1.1', '2.0', 'v2', 'a'.repeat(13), 'a'.repeat(64), 'a'.repeat(65), '-bad', '1.0#x', '1"0', '"1.0"', 'é1'];
  const statuses = ['approved', 'approved', 'superseded by=1.1', 'superseded by=2.0', 'superseded by=1.0', 'superseded  by=1.1', 'superseded by="1.1"', 'superseded "by=1.1"', 'superseded by=', 'superseded by=-x', 'superseded', 'revoked reason="x"', 'aproved', '"approved"', 'approved by=1.1', 'superseded reason="x"'];
  const digests = [m(1), m(2), m(3), `${m(1)} ${m(2)}`, `${m(4)}\t${m(4)}`, m(5).toUpperCase(), `sha256:${'a'.repeat(63)}`, `blake3:${'b'.repeat(64)}`, `sha512:${'c'.repeat(64)}`, `${m(6)}"`, `${m(7)}x`, `by=1.0`, ''];
  const tails = ['', '', ' ', '\t', ' # a comment "quoted" # twice', '#', ' #', '#tight', ' extra'];
  const files: Record<string, string>[] = [];
  for (let f = 0; f < 600; f++) {
    const body: string[] = [];
    const count = 1 + Math.floor(random() * 8);
    const clean = random() < 0.4; // valid blocks: a by= chain ending in an approved version
    for (let i = 0; i < count; i++) {
      if (clean) {
        const name = i % 3 === 0 ? `${i}.0` : `release-${i}.0-build.${f}`; // short and long (sliced) versions
        const next = (i + 1) % 3 === 0 ? `${i + 1}.0` : `release-${i + 1}.0-build.${f}`;
        const status = i === count - 1 ? 'approved' : random() < 0.2 ? 'revoked reason="r"' : `superseded by=${next}`;
        const digest = random() < 0.1 ? `${m(f * 100 + i)} ${m(f * 100 + 50 + i)}` : m(f * 100 + i);
        body.push(`${pick(lead)}version${pick(blank)}${name}${pick(blank)}${status}${pick(blank)}${digest}${pick(tails.slice(0, 8))}`);
      } else {
        body.push(`${pick(lead)}${pick(keyword)}${pick(blank)}${pick(versions)}${pick(blank)}${pick(statuses)}${pick(blank)}${pick(digests)}${pick(tails)}`);
      }
    }
    // Versions before the binary line, and a second block, go the general way too.
    const head = random() < 0.1 ? [body.pop() ?? '', 'binary x'] : ['binary x'];
    const tail = random() < 0.1 ? ['binary y', `version 1.0 approved ${m(9)}`] : [];
    files.push({ 'x.policy': lines(...head, 'vms all', ...body, ...tail) });
  }
  const read = (text: string, plain: boolean): string => {
    parseOptions.plainVersionLines = plain;
    try {
      const parsed = parsePolicyFile('x.policy', text);
      return JSON.stringify({ ast: parsed.ast, errors: parsed.errors.map((e) => e.message) });
    } finally {
      parseOptions.plainVersionLines = true;
    }
  };
  let plainOk = 0;
  for (const file of files) {
    const text = file['x.policy']!;
    const general = read(text, false);
    assert.is(read(text, true), general, text);
    if (!general.includes('"errors":[]')) continue;
    plainOk++;
    // And a file that builds gives the same snapshot entries either way.
    parseOptions.plainVersionLines = false;
    const slow = JSON.stringify(snap(file));
    parseOptions.plainVersionLines = true;
    assert.is(JSON.stringify(snap(file)), slow);
  }
  assert.ok(plainOk > 20, `only ${plainOk} files without errors: the generator no longer exercises the plain path`);
});

test('measurements repeated across files: every repeat reported against its first listing', () => {
  const errors = buildErrors({
    'a.policy': lines('binary a', `version 1 approved ${m(1)} ${m(2)}`, `version 2 approved ${m(3)}`),
    'b.policy': lines('binary b', `version 1 approved ${m(4)} ${m(2)}`, `version 2 approved ${m(1)}`),
    'c.policy': lines('binary c', `version 9 approved ${m(5)}`, `version 8 approved ${m(4)} ${m(3)}`),
  });
  assert.equal(errors, [
    `b.policy:2: version 1: ${m(2)} is already listed for a 1 at a.policy:2`,
    `b.policy:3: version 2: ${m(1)} is already listed for a 1 at a.policy:2`,
    `c.policy:3: version 8: ${m(3)} is already listed for a 2 at a.policy:3`,
    `c.policy:3: version 8: ${m(4)} is already listed for b 1 at b.policy:2`,
  ]);
  // Without repeats, every measurement of a many-measurement line is indexed.
  const s = snap({ 'a.policy': lines('binary a', `version 1 approved ${m(1)} ${m(2)} ${m(3)}`), 'b.policy': lines('binary b', `version 1 approved ${m(4)}`) });
  assert.equal([...s.index.keys()], [m(1), m(2), m(3), m(4)]);
  assert.ok(s.index.get(m(3)) === s.binaries.get('a')!.versions.get('1'));
});

test('a lazy FrozenMap fills on its first read of any kind, once, and refuses changes', () => {
  const reads: Array<(map: FrozenMap<string, number>) => unknown> = [
    (map) => map.size,
    (map) => map.get('b'),
    (map) => map.has('a'),
    (map) => [...map],
    (map) => [...map.keys()],
    (map) => [...map.values()],
    (map) => [...map.entries()],
    (map) => JSON.stringify(map),
    (map) => {
      const seen: string[] = [];
      map.forEach((_, k) => seen.push(k));
      return seen;
    },
  ];
  for (const [i, read] of reads.entries()) {
    let fills = 0;
    const map = FrozenMap.lazy<string, number>(() => {
      fills++;
      return [['a', 1], ['b', 2]];
    });
    assert.is(fills, 0);
    read(map);
    assert.is(fills, 1, `read ${i}`);
    assert.equal([...map], [['a', 1], ['b', 2]]);
    assert.equal([map.size, map.get('b'), map.has('c'), JSON.stringify(map)], [2, 2, false, '{"a":1,"b":2}']);
    assert.is(fills, 1);
    assert.throws(() => (map as Map<string, number>).set('c', 3), (e: unknown) => e instanceof TypeError);
    assert.throws(() => map.put('c', 3), (e: unknown) => e instanceof TypeError);
    assert.throws(() => (map as Map<string, number>).delete('a'), (e: unknown) => e instanceof TypeError);
    assert.is(map.size, 2);
  }
});

test('scopes handed out before the groups file is read are filled, shared and sealed', () => {
  // a.policy and b.policy sort before groups.policy: their scopes are made before any group is known.
  const s = snap({
    'a.policy': lines('binary a', 'vms group:outer vm:solo', `version 1 approved ${m(1)}`),
    'b.policy': lines('binary b', 'vms vm:solo', 'vms group:outer', `version 1 approved ${m(2)}`),
    'c.policy': lines('binary c', 'vms group:inner', `version 1 approved ${m(3)}`),
    'groups.policy': lines('group outer group:inner vm:o1', 'group inner vm:i1 uuid:6F1C2A9E-3B7D-4E58-9A0C-1D2E3F405162'),
  });
  const a = s.index.get(m(1))!.scope;
  assert.equal([...a.names].sort(), ['i1', 'o1', 'solo']);
  assert.equal([...a.uuids], ['6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162']);
  assert.ok(s.index.get(m(2))!.scope === a, 'same members in another order: one scope');
  assert.equal([...s.index.get(m(3))!.scope.names], ['i1']);
  assert.equal(s.binaries.get('b')!.vms, ['vm:solo', 'group:outer']);
  assert.throws(() => (a.names as FrozenSet<string>).put('intruder'), (e: unknown) => e instanceof TypeError);
  assert.throws(() => (a.uuids as FrozenSet<string>).put('intruder'), (e: unknown) => e instanceof TypeError);
  assert.is(a.names.has('intruder'), false);
  assert.equal(buildErrors({ 'a.policy': lines('binary a', 'vms group:nope', `version 1 approved ${m(1)}`) }), ['a.policy:2: vms: group:nope is not defined']);
});

test('parsePolicyFile keeps its public shape (ast and errors only)', () => {
  const parsed = parsePolicyFile('x.policy', lines('binary x', `version 1 approved ${m(1)}`));
  assert.equal(Object.keys(parsed).sort(), ['ast', 'errors']);
});

test('ownText returns an equal string, whatever its length, spaces or characters', () => {
  const samples = ['', 'a', 'abcdefghijkl', 'abcdefghijklm', m(1), ' leading and trailing spaces ', '\ttab-ended text\t', 'ünïcödé text longer than thirteen', '/opt/my tools/python3 '];
  for (const text of samples) {
    const long = `xx ${text} yy`.slice(3, 3 + text.length); // a slice, as tokens are
    assert.is(ownText(long), text);
  }
});

test('strings kept in a snapshot are right after the texts they came from are gone', () => {
  const files: Record<string, string> = {
    'groups.policy': lines('group a-rather-long-group-name vm:a-rather-long-domain-name uuid:6F1C2A9E-3B7D-4E58-9A0C-1D2E3F405162'),
    'a-long-binary-name.policy': lines('binary a-long-binary-name', 'interpreter "/opt/my tools/python3"', 'vms group:a-rather-long-group-name', `version 2024.01.15-build.3 revoked reason="a reason of some length" ${m(1)}`, `version 2024.02.01-build.1 approved ${m(2)}`),
  };
  const s = snap(files);
  const e = s.index.get(m(1))!;
  assert.equal([e.name, e.version, e.reason, e.measurements], ['a-long-binary-name', '2024.01.15-build.3', 'a reason of some length', [m(1)]]);
  assert.equal(e.interpreter, { kind: 'path', path: '/opt/my tools/python3' });
  assert.equal([...e.scope.names], ['a-rather-long-domain-name']);
  assert.equal([...e.scope.uuids], ['6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162']);
  assert.equal(s.groups.get('a-rather-long-group-name')!.members, [
    { kind: 'vm', value: 'a-rather-long-domain-name' },
    { kind: 'uuid', value: '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162' },
  ]);
});

test.run();
