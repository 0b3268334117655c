// measure() without a scratch of the caller's uses the module's one: a WebAssembly.Memory per
// call reserved ~10 GiB of address space each until a collection (a daemon's VmSize reached
// hundreds of GB, and each reservation is a mapping that every fork(2) of bwrap copies).
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bufferReader, measure, sharedScratch } from '../../lib/measure/index.js';

const vmSizeGiB = (): number => Number(/^VmSize:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / (1024 * 1024);

test('50 measures reserve no new address space; every one gives the same measurement', async () => {
  const elf = new Uint8Array(readFileSync('/usr/bin/true'));
  const first = await measure(bufferReader(elf));
  sharedScratch();
  const before = vmSizeGiB();
  for (let i = 0; i < 50; i++) assert.is((await measure(bufferReader(elf))).measurement, first.measurement);
  const grown = vmSizeGiB() - before;
  assert.ok(grown < 5, `VmSize grew by ${grown.toFixed(1)} GiB over 50 measures`);
});

test('two measures in flight at once give the measurements each gives alone', async () => {
  const a = new Uint8Array(readFileSync('/usr/bin/true'));
  const b = new Uint8Array(readFileSync('/usr/bin/env'));
  const [alone1, alone2] = [await measure(bufferReader(a)), await measure(bufferReader(b))];
  const both = await Promise.all([measure(bufferReader(a)), measure(bufferReader(b)), measure(bufferReader(a))]);
  assert.equal(both.map((r) => r.measurement), [alone1.measurement, alone2.measurement, alone1.measurement]);
});

test.run();
