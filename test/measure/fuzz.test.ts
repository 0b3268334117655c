// Bounded property/fuzz run for CI: FUZZ_SECONDS (default 24) spread over random inputs
// behind each magic and mutations of real ELF, PE and WebAssembly binaries. The long run
// is `npm run fuzz -- --seconds N`. A failure prints fast-check's seed and the input.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VirtOffloadError } from '../../lib/errors.js';
import { checkInput, fuzzFor, guardedReader } from './fuzz-harness.js';
import { elfSeeds, peSeeds, wasmSeeds } from './fuzz-seeds.js';

const seconds = Number(process.env.FUZZ_SECONDS ?? 24);

test('the seeds themselves measure (so mutations start from valid inputs)', () => {
  for (const seed of [...elfSeeds(), ...wasmSeeds(), ...peSeeds()]) {
    const result = checkInput(seed);
    assert.not.instance(result, VirtOffloadError, result instanceof VirtOffloadError ? result.message : '');
  }
});

test('the guarded reader catches out-of-range reads (the harness can fail)', () => {
  const reader = guardedReader(new Uint8Array(10));
  assert.throws(() => reader.read(new Uint8Array(1), 11), /out-of-range/);
  assert.throws(() => reader.read(new Uint8Array(1), -1), /out-of-range/);
});

test(`random and mutated inputs: typed refusal or a sound plan (${seconds}s budget)`, () => {
  fuzzFor(seconds, { elf: elfSeeds(), wasm: wasmSeeds(), pe: peSeeds() }, (line) => console.log(`    ${line}`));
});

test.run();
