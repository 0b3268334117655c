import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PlanBuilder, sweepPrefixLayout } from '../../lib/measure/plan-builder.js';
import { InternalError } from '../../lib/errors.js';

test('pieces follow dispositions and adjacent ranges merge', () => {
  const b = new PlanBuilder('raw', 'v1', 10);
  b.keep(2, 'a').keep(4, 'a').zero(6, 'z').drop(8, 'd').rewrite(10, new Uint8Array([7, 7, 7]), 'r');
  const plan = b.finish();
  assert.equal(plan.ranges.map((r) => [r.start, r.end, r.disposition]), [[0, 4, 'kept'], [4, 6, 'zeroed'], [6, 8, 'dropped'], [8, 10, 'rewritten']]);
  assert.equal(plan.pieces, [{ kind: 'file', offset: 0, length: 4 }, { kind: 'zero', length: 2 }, { kind: 'bytes', data: new Uint8Array([7, 7, 7]) }]);
  assert.is(plan.canonicalSize, 9);
});

test('finish refuses a plan that does not cover the file; ranges cannot go backwards', () => {
  assert.throws(() => new PlanBuilder('raw', 'v1', 10).keep(5, 'x').finish(), (e: unknown) => e instanceof InternalError);
  assert.throws(() => new PlanBuilder('raw', 'v1', 10).keep(5, 'x').keep(3, 'y'), (e: unknown) => e instanceof InternalError);
  assert.throws(() => new PlanBuilder('raw', 'v1', 10).keep(11, 'x'), (e: unknown) => e instanceof InternalError);
});

test('sweepPrefixLayout: covered kept, zero patches win, gaps zeroed, tail dropped', () => {
  const b = new PlanBuilder('elf', 'v1', 100);
  sweepPrefixLayout(b, {
    prefixEnd: 60,
    covered: [{ start: 0, end: 20, label: 'hdr' }, { start: 10, end: 30, label: 'seg' }, { start: 40, end: 60, label: 'seg2' }],
    zeroed: [{ start: 12, end: 14, label: 'field' }],
    gapReason: 'gap',
    tailReason: 'tail',
  });
  const plan = b.finish();
  assert.equal(
    plan.ranges.map((r) => `${r.start}-${r.end} ${r.disposition} ${r.reason}`),
    ['0-10 kept hdr', '10-12 kept hdr, seg', '12-14 zeroed field', '14-20 kept hdr, seg', '20-30 kept seg', '30-40 zeroed gap', '40-60 kept seg2', '60-100 dropped tail'],
  );
  assert.is(plan.canonicalSize, 60);
});

test('sweepPrefixLayout names at most three overlapping ranges', () => {
  const b = new PlanBuilder('elf', 'v1', 10);
  const covered = Array.from({ length: 1000 }, (_, i) => ({ start: 0, end: 10, label: `s${i}` }));
  sweepPrefixLayout(b, { prefixEnd: 10, covered, zeroed: [], gapReason: 'g', tailReason: 't' });
  assert.is(b.finish().ranges[0]!.reason, 's0, s1, s2 and 997 more');
});

test.run();
