// The compact form a snapshot keeps: measurements as bytes, the keyed digest table, and
// entries made on first read (same objects after that, same content as the files say).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeMeasurement, DIGEST_STRIDE, encodeMeasurement } from '../../lib/policy/compiled.js';
import type { PolicyEntry } from '../../lib/policy/index.js';
import { compileFile } from '../../lib/policy/snapshot.js';
import { DigestTable } from '../../lib/policy/digest-index.js';
import { buildErrors, lines, m, snap } from './helpers.js';

test('encodeMeasurement reads exactly the policy spelling and decodeMeasurement gives it back', () => {
  const out = new Uint8Array(DIGEST_STRIDE + 5);
  for (const text of [m(0), m(1), m(0xfedcba9876543210), m(7, 'blake3'), `sha256:${'f'.repeat(64)}`, `blake3:${'0123456789abcdef'.repeat(4)}`]) {
    assert.ok(encodeMeasurement(text, out, 5), text);
    assert.is(decodeMeasurement(out, 5), text);
  }
  const refused = [m(1).toUpperCase(), `SHA256:${'a'.repeat(64)}`, `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `sha256:${'a'.repeat(65)}`, `sha512:${'a'.repeat(64)}`, `sha256-${'a'.repeat(64)}`, `sha256:${'g'.repeat(64)}`, `sha256:${'a'.repeat(63)}\u0100`, `sha256:${'a'.repeat(63)} `, ''];
  for (const text of refused) assert.is(encodeMeasurement(text, out, 0), false, JSON.stringify(text));
});

test('the index answers only exact measurements: other spellings, other types and near misses are unknown', () => {
  const s = snap({ 'x.policy': lines('binary x', 'vms all', `version 1 approved ${m(1)} ${m(1, 'blake3')}`) });
  assert.ok(s.index.get(m(1)) !== undefined);
  assert.ok(s.index.get(m(1)) === s.index.get(m(1, 'blake3')));
  for (const miss of [m(1).toUpperCase(), m(2), m(1).slice(0, 70), `${m(1)} `, `blake3:${m(2).slice(7)}`, '']) {
    assert.is(s.index.get(miss), undefined, miss);
    assert.is(s.index.has(miss), false, miss);
  }
  assert.is((s.index as Map<unknown, unknown>).get(42), undefined);
  assert.is((s.index as Map<unknown, unknown>).has(undefined), false);
});

test('entries are made once, on first read, and are the same objects by every path', () => {
  const s = snap({
    'a.policy': lines('binary a', 'vms all', `version 1 superseded by=2 ${m(1)}`, `version 2 revoked reason="r" ${m(2)}`, `version 3 approved ${m(3)} ${m(4)}`),
    'b.policy': lines('binary b', `version 1 approved ${m(5)}`),
  });
  const viaIndex = s.index.get(m(4))!;
  assert.ok(viaIndex === s.index.get(m(3)));
  assert.ok(viaIndex === s.binaries.get('a')!.versions.get('3'));
  assert.ok([...s.index.values()][2] === viaIndex);
  assert.equal(viaIndex.measurements, [m(3), m(4)]);
  assert.ok(Object.isFrozen(viaIndex) && Object.isFrozen(viaIndex.measurements));
  assert.equal([...s.index.keys()], [m(1), m(2), m(3), m(4), m(5)]);
  assert.equal([...s.index].map(([k, e]) => `${k.slice(-1)}=${e.name}${e.version}`), ['1=a1', '2=a2', '3=a3', '4=a3', '5=b1']);
  const seen: string[] = [];
  s.index.forEach((e, k) => seen.push(`${k.slice(-1)}:${e.status}`));
  assert.equal(seen, ['1:superseded', '2:revoked', '3:approved', '4:approved', '5:approved']);
  // The fields, in the order they always had (JSON output depends on it).
  assert.equal(Object.keys(s.index.get(m(1))!), ['name', 'version', 'status', 'supersededBy', 'measurements', 'limits', 'interpreter', 'scope', 'file', 'line']);
  assert.equal(Object.keys(s.index.get(m(2))!), ['name', 'version', 'status', 'reason', 'measurements', 'limits', 'interpreter', 'scope', 'file', 'line']);
  assert.is(s.index instanceof Map, true);
  const e: PolicyEntry = s.index.get(m(2))!;
  assert.equal([e.reason, e.line, e.file], ['r', 4, 'a.policy']);
});

test('digests that share all but their last bytes (a flood against a hash of the first bytes) still build fast and all resolve', () => {
  const n = 20_000;
  const versions: string[] = [];
  // Same algorithm, same first 60 hex digits: only the last 4 differ.
  for (let i = 0; i < n; i++) versions.push(`version ${i} approved sha256:${'ab'.repeat(30)}${i.toString(16).padStart(4, '0')}`);
  const started = Date.now();
  const s = snap({ 'x.policy': lines('binary x', 'vms all', ...versions) });
  const elapsed = Date.now() - started;
  assert.is(s.index.size, n);
  for (let i = 0; i < n; i += 997) assert.is(s.index.get(`sha256:${'ab'.repeat(30)}${i.toString(16).padStart(4, '0')}`)!.version, String(i));
  // Not a timing assertion on the shared machine: a quadratic build of 20k would take minutes.
  assert.ok(elapsed < 30_000, `${elapsed} ms`);
});

test('the digest table reports each repeat against its first listing, across files only', () => {
  const a = compileFile('a.policy', lines('binary a', `version 1 approved ${m(1)} ${m(2)}`)).binary!;
  const b = compileFile('b.policy', lines('binary b', `version 1 approved ${m(3)}`, `version 2 approved ${m(2)}`)).binary!;
  const c = compileFile('c.policy', lines('binary c', `version 1 approved ${m(2)} ${m(1)}`)).binary!;
  const repeats: number[][] = [];
  const table = new DigestTable([a, b, c], (...args) => repeats.push(args));
  assert.equal(repeats, [[1, 1, 0, 1], [2, 0, 0, 1], [2, 1, 0, 0]]);
  assert.is(table.size, 3);
  assert.equal([table.find(m(1)), table.find(m(2)), table.find(m(3)), table.find(m(4))], [0, 1, 2, -1]);
  assert.equal(buildErrors({ 'a.policy': lines('binary a', `version 1 approved ${m(1)}`), 'c.policy': lines('binary c', `version 1 approved ${m(1)}`) }), [
    `c.policy:2: version 1: ${m(1)} is already listed for a 1 at a.policy:2`,
  ]);
});

test('compiled files are independent of each other: many small files and one large one pack alike', () => {
  const big = Array.from({ length: 70_000 }, (_, i) => `version ${i} approved ${m(1_000_000 + i)}`);
  const files: Record<string, string> = { 'big.policy': lines('binary big', 'vms all', ...big) };
  for (let f = 0; f < 300; f++) files[`t${f}.policy`] = lines(`binary t${f}`, 'vms all', `version 1 superseded by=2 ${m(f * 2 + 1)}`, `version 2 approved ${m(f * 2 + 2)}`);
  const s = snap(files);
  assert.is(s.index.size, 70_000 + 600);
  assert.is(s.index.get(m(1_000_000 + 69_999))!.version, '69999');
  for (let f = 0; f < 300; f += 37) {
    const e = s.index.get(m(f * 2 + 1))!;
    assert.equal([e.name, e.version, e.supersededBy, e.replacement, e.measurements], [`t${f}`, '1', '2', '2', [m(f * 2 + 1)]]);
  }
});

test.run();
