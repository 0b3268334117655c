// Assertions on canonical plans shared by the format tests.
import * as assert from 'uvu/assert';
import type { CanonicalPlan } from '../../lib/measure/index.js';

/** The explanation must tile the input exactly, in order, with no empty range. */
export function assertTiles(plan: CanonicalPlan, size: number): void {
  let at = 0;
  for (const r of plan.ranges) {
    assert.is(r.start, at, `range starts where the previous ended (${r.reason})`);
    assert.ok(r.end > r.start, `range is not empty (${r.reason})`);
    at = r.end;
  }
  assert.is(at, size);
}
