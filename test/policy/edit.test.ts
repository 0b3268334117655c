// Edit helpers: canonical rendering, minimal line edits that keep comments, re-parse
// round trips, and a property test (random valid binaries → render → parse → same).
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  appendVersionLine,
  diffSnapshots,
  LIMIT_KEY_ORDER,
  parsePolicyFile,
  PolicyError,
  renderBinaryFile,
  setInterpreterLine,
  setLimitsLine,
  setVersionStatus,
  setVmsLine,
  type BinaryFileSpec,
  type VersionSpec,
} from '../../lib/policy/index.js';
import { lines, m, snap } from './helpers.js';

const HELLO = lines(
  '# hello: the greeting tool',
  'binary hello',
  'limits wall=10s   # generous',
  '',
  'vms vm:a',
  '  # build hosts too',
  'vms group:build',
  `version 1.0 approved ${m(1)}   # first release`,
  `  version 1.1 approved ${m(2)}`,
  '# trailing notes stay put',
);
const GROUPS = 'group build vm:b1\n';

/** Lines added and removed between two texts (as multisets: moved lines do not count). */
function lineChanges(before: string, after: string): { removed: string[]; added: string[] } {
  const count = new Map<string, number>();
  for (const l of before.split('\n')) count.set(l, (count.get(l) ?? 0) + 1);
  const added: string[] = [];
  for (const l of after.split('\n')) {
    const c = count.get(l) ?? 0;
    if (c > 0) count.set(l, c - 1);
    else added.push(l);
  }
  const removed = [...count].flatMap(([l, c]) => Array.from({ length: c }, () => l));
  return { removed, added };
}

const kinds = (before: string, after: string) =>
  diffSnapshots(snap({ 'groups.policy': GROUPS, 'hello.policy': before }), snap({ 'groups.policy': GROUPS, 'hello.policy': after })).map((c) => `${c.kind} ${c.version ?? ''}`.trim());

test('renderBinaryFile: canonical layout, stable bytes, parses clean', () => {
  const spec: BinaryFileSpec = {
    name: 'report',
    comment: ['report: renders summaries', ''],
    interpreter: { kind: 'path', path: '/opt/py 3/bin/python3' },
    limits: { memory: 512 << 20, wall: 120_000, argbytes: 4096 },
    vms: ['group:reporting', 'uuid:6F1C2A9E-3B7D-4E58-9A0C-1D2E3F405162'],
    versions: [
      { version: '1', status: 'superseded', by: '2', measurements: [m(1)] },
      { version: '2', status: 'revoked', reason: 'said "no"', measurements: [m(2), m(3, 'blake3')] },
      { version: '3', status: 'approved', measurements: [m(4)] },
    ],
  };
  const text = renderBinaryFile(spec);
  assert.is(
    text,
    lines(
      '# report: renders summaries',
      '#',
      'binary report',
      'interpreter "/opt/py 3/bin/python3"',
      'limits wall=2m memory=512M argbytes=4K',
      'vms group:reporting uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162',
      `version 1 superseded by=2 ${m(1)}`,
      `version 2 revoked reason="said \\"no\\"" ${m(2)} ${m(3, 'blake3')}`,
      `version 3 approved ${m(4)}`,
    ),
  );
  assert.is(renderBinaryFile(spec), text);
  const { ast, errors } = parsePolicyFile('report.policy', text);
  assert.equal(errors, []);
  assert.is(ast.binary!.versions[1]!.status === 'revoked' && ast.binary!.versions[1]!.reason, 'said "no"');
  assert.is(renderBinaryFile({ name: 'bare', versions: [] }), 'binary bare\n');
});

test('appendVersionLine: one line added after the last version, comments untouched', () => {
  const after = appendVersionLine(HELLO, { version: '1.2', status: 'approved', measurements: [m(3)] });
  assert.equal(lineChanges(HELLO, after), { removed: [], added: [`version 1.2 approved ${m(3)}`] });
  assert.is(after.split('\n').indexOf(`version 1.2 approved ${m(3)}`), 9); // right after line 9 (1.1)
  assert.equal(kinds(HELLO, after), ['approved 1.2']);
  assert.is(appendVersionLine(HELLO, { version: '1.2', status: 'approved', measurements: [m(3)] }), after);
});

test('appendVersionLine: a file without versions or a final newline', () => {
  assert.is(appendVersionLine('binary x\nvms all', { version: '1', status: 'approved', measurements: [m(1)] }, { file: 'x.policy' }), `binary x\nvms all\nversion 1 approved ${m(1)}\n`);
  assert.is(appendVersionLine('binary x\n# end', { version: '1', status: 'approved', measurements: [m(1)] }), `binary x\nversion 1 approved ${m(1)}\n# end`);
});

test('setVersionStatus: only that line changes; indentation and its comment stay', () => {
  const withNew = appendVersionLine(HELLO, { version: '1.2', status: 'approved', measurements: [m(3)] });
  const superseded = setVersionStatus(withNew, '1.0', { status: 'superseded', by: '1.2' });
  assert.equal(lineChanges(withNew, superseded), {
    removed: [`version 1.0 approved ${m(1)}   # first release`],
    added: [`version 1.0 superseded by=1.2 ${m(1)}   # first release`],
  });
  assert.equal(kinds(withNew, superseded), ['superseded 1.0']);
  const revoked = setVersionStatus(superseded, '1.1', { status: 'revoked', reason: 'prints "secrets" # really' });
  assert.equal(lineChanges(superseded, revoked).added, [`  version 1.1 revoked reason="prints \\"secrets\\" # really" ${m(2)}`]);
  assert.equal(kinds(superseded, revoked), ['revoked 1.1']);
  const back = setVersionStatus(setVersionStatus(revoked, '1.1', { status: 'approved' }), '1.0', { status: 'approved' });
  assert.is(back, withNew); // undoing both edits gives the original bytes back
  assert.is(setVersionStatus(superseded, '1.0', { status: 'superseded', by: '1.2' }), superseded);
});

test('setVmsLine: first vms line replaced in place, the others removed; insert; remove all', () => {
  const one = setVmsLine(HELLO, ['vm:a', 'vm:c']);
  assert.is(one, HELLO.replace('vms vm:a\n', 'vms vm:a vm:c\n').replace('vms group:build\n', ''));
  assert.equal(kinds(HELLO, one), ['re-scoped']);
  const all = setVmsLine(HELLO, 'all');
  assert.ok(all.includes('\nvms all\n') && all.includes('  # build hosts too'));
  const none = setVmsLine(HELLO, []);
  assert.ok(!none.includes('vms '));
  const inserted = setVmsLine(none, ['group:build']);
  assert.is(inserted.split('\n')[3], 'vms group:build'); // after the limits line
  assert.is(setVmsLine(one, ['vm:a', 'vm:c']), one);
});

test('setLimitsLine and setInterpreterLine keep the limits comment and place new lines after the header', () => {
  const limits = setLimitsLine(HELLO, { wall: 60_000, pids: 4 });
  assert.equal(lineChanges(HELLO, limits).added, ['limits wall=1m pids=4   # generous']);
  assert.equal(kinds(HELLO, limits), ['limits-changed']);
  const interp = setInterpreterLine(HELLO, { kind: 'wasi' });
  assert.is(interp.split('\n')[2], 'interpreter wasi');
  assert.is(setInterpreterLine(interp, { kind: 'none' }), HELLO);
  assert.is(setLimitsLine(setLimitsLine(HELLO, undefined), { wall: 10_000 }).split('\n')[2], 'limits wall=10s');
});

test('edits refuse what would not parse, and never smuggle extra lines', () => {
  const refuses = (f: () => unknown, fragment: string) =>
    assert.throws(f, (e: unknown) => e instanceof PolicyError && e.message.includes(fragment), fragment);
  refuses(() => appendVersionLine(HELLO, { version: '1.0', status: 'approved', measurements: [m(9)] }), 'version 1.0 of hello already exists');
  refuses(() => appendVersionLine(HELLO, { version: '2', status: 'approved', measurements: [m(1)] }), 'is already listed for version 1.0');
  refuses(() => appendVersionLine(HELLO, { version: '2', status: 'approved', measurements: [`${m(5)}\nversion 3 approved ${m(6)}`] }), 'a line break is not allowed');
  refuses(() => appendVersionLine(HELLO, { version: '2', status: 'approved', measurements: [`${m(5)} ${m(6)}`] }), 'exactly 64 lowercase hex digits');
  refuses(() => setVersionStatus(HELLO, '1.0', { status: 'revoked', reason: 'x\nversion 9 approved' }), 'a line break is not allowed');
  refuses(() => setVersionStatus(HELLO, '9', { status: 'approved' }), 'binary hello has no version 9');
  refuses(() => setVersionStatus(HELLO, '1.0', { status: 'superseded', by: '7' }), 'would leave hello.policy invalid');
  refuses(() => setVmsLine(HELLO, ['web1']), "'web1' does not name a VM");
  refuses(() => appendVersionLine(`${HELLO}bogus\n`, { version: '2', status: 'approved', measurements: [m(9)] }), 'has errors; fix them before editing it');
  refuses(() => appendVersionLine('group g vm:a\n', { version: '2', status: 'approved', measurements: [m(9)] }), 'has no binary block');
  refuses(() => renderBinaryFile({ name: 'x', comment: ['ok\nbinary y'], versions: [] }), 'a line break is not allowed');
  refuses(() => renderBinaryFile({ name: 'x', interpreter: { kind: 'path', path: 'relative' }, versions: [] }), 'must be an absolute path');
});

// Random valid binaries: render → parse → the same declarations; render is a fixed point.
const version = fc.stringMatching(/^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,8}$/);
const reason = fc.string({ minLength: 1, maxLength: 40 }).filter((r) => r.trim() !== '' && !/[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]/.test(r));
const member = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,10}$/).map((n) => `vm:${n}`),
  fc.uuid().map((u) => `uuid:${u}`),
  fc.stringMatching(/^[a-z0-9][a-z0-9._+-]{0,10}$/).map((n) => `group:${n}`),
);
const specArb = fc
  .record({
    name: fc.stringMatching(/^[a-z0-9][a-z0-9._+-]{0,12}$/),
    interpreter: fc.constantFrom<BinaryFileSpec['interpreter']>({ kind: 'none' }, { kind: 'wasi' }, { kind: 'path', path: '/usr/bin/python3' }, { kind: 'path', path: '/opt/a b/"q"\\x' }),
    limits: fc.record({ wall: fc.integer({ min: 1, max: 86_400_000 }), pids: fc.integer({ min: 1, max: 65536 }), output: fc.integer({ min: 0, max: 1 << 30 }) }, { requiredKeys: [] }),
    vms: fc.oneof(fc.constant('all' as const), fc.uniqueArray(member, { maxLength: 5, selector: (s) => s.toLowerCase() })),
    versions: fc.uniqueArray(fc.record({ version, kind: fc.constantFrom('approved', 'superseded', 'revoked'), reason, count: fc.integer({ min: 1, max: 3 }) }), { maxLength: 6, selector: (v) => v.version }),
  })
  .map((r): BinaryFileSpec => {
    let next = 1;
    const versions = r.versions.map((v, i): VersionSpec => {
      const measurements = Array.from({ length: v.count }, () => m(next++));
      const newer = r.versions[i + 1]?.version;
      if (v.kind === 'superseded' && newer !== undefined) return { version: v.version, status: 'superseded', by: newer, measurements };
      if (v.kind === 'revoked') return { version: v.version, status: 'revoked', reason: v.reason, measurements };
      return { version: v.version, status: 'approved', measurements };
    });
    return { name: r.name, interpreter: r.interpreter, limits: r.limits, vms: r.vms, versions };
  });

test('property: render → parse gives back the spec, and rendering the parse is byte-identical', () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const text = renderBinaryFile(spec);
      const { ast, errors } = parsePolicyFile(`dir/${spec.name}.policy`, text);
      assert.equal(errors, []);
      const b = ast.binary!;
      assert.equal(b.versions.map(({ line: _line, ...v }) => v), spec.versions.map((v) => ({ ...v })));
      assert.equal(b.interpreter?.value ?? { kind: 'none' }, spec.interpreter);
      const limits = Object.fromEntries(LIMIT_KEY_ORDER.filter((k) => spec.limits?.[k] !== undefined).map((k) => [k, spec.limits![k]]));
      assert.equal(b.limits?.values ?? {}, limits);
      const vms = b.vms.some((v) => v.all) ? 'all' : b.vms.flatMap((v) => v.members.map((x) => `${x.kind}:${x.value}`));
      assert.equal(vms, spec.vms === 'all' ? 'all' : spec.vms!.map((x) => (x.startsWith('uuid:') ? x.toLowerCase() : x)));
      const again = renderBinaryFile({ name: b.name, interpreter: b.interpreter?.value, limits: b.limits?.values, vms, versions: b.versions });
      assert.is(again, text);
    }),
    { numRuns: 300, seed: 20240601 },
  );
});

test.run();
