// Property/fuzz harness shared by the bounded CI run (fuzz.test.ts) and the long run
// (fuzz.run.ts, `npm run fuzz -- --seconds N`). For random and mutated inputs of every
// format, the canonicalizer must either refuse with a typed error or return a plan whose
// explanation tiles the input, whose pieces stay inside it, and which streams exactly
// canonicalSize bytes — without reading outside the input and within a time bound.
import fc from 'fast-check';
import { VirtOffloadError } from '../../lib/errors.js';
import { planCanonical, streamCanonical, type ByteReader, type CanonicalPlan, type Profile } from '../../lib/measure/index.js';

/** Largest single read a canonicalizer may request (header/table reads are capped at 16 MiB). */
const MAX_READ = 16 * 1024 * 1024 + 1;
/** A plan for a small input that takes longer than this is treated as a hang. */
export const SLOW_MS = 2000;

/** A reader over bytes that fails the property on any out-of-range or absurd request. */
export function guardedReader(bytes: Uint8Array): ByteReader & { reads: number } {
  const reader = {
    size: bytes.length,
    reads: 0,
    read(dst: Uint8Array, position: number): number {
      reader.reads++;
      if (!Number.isSafeInteger(position) || position < 0 || position > bytes.length) {
        throw new Error(`out-of-range read at ${position} (size ${bytes.length})`);
      }
      if (dst.length > MAX_READ) throw new Error(`absurd read of ${dst.length} bytes`);
      const n = Math.min(dst.length, bytes.length - position);
      dst.set(bytes.subarray(position, position + n));
      return n;
    },
  };
  return reader;
}

/** Check one input; throws (failing the property) on a crash, an untyped error, or a bad plan. */
export function checkInput(bytes: Uint8Array, profile: Profile = 'v1'): CanonicalPlan | VirtOffloadError {
  const reader = guardedReader(bytes);
  const started = performance.now();
  let plan: CanonicalPlan;
  try {
    plan = planCanonical(reader, profile);
  } catch (err) {
    if (err instanceof VirtOffloadError && (err.code === 'EMALFORMED' || err.code === 'EUNSUPPORTED')) return err;
    throw new Error(`untyped failure on a ${bytes.length}-byte input: ${err instanceof Error ? err.stack : String(err)}`);
  }
  const elapsed = performance.now() - started;
  if (elapsed > SLOW_MS) throw new Error(`planning a ${bytes.length}-byte input took ${elapsed.toFixed(0)} ms`);
  checkPlan(plan, bytes.length);
  let streamed = 0;
  streamCanonical(plan, reader, new Uint8Array(64 * 1024), (chunk) => {
    streamed += chunk.length;
  });
  if (streamed !== plan.canonicalSize) throw new Error(`streamed ${streamed} bytes, plan says ${plan.canonicalSize}`);
  return plan;
}

export function checkPlan(plan: CanonicalPlan, size: number): void {
  if (plan.fileSize !== size) throw new Error(`plan fileSize ${plan.fileSize} != input ${size}`);
  let at = 0;
  let presentBytes = 0;
  for (const r of plan.ranges) {
    if (r.start !== at || r.end <= r.start) throw new Error(`ranges do not tile: ${JSON.stringify(r)} at ${at}`);
    if (r.disposition === 'kept' || r.disposition === 'zeroed') presentBytes += r.end - r.start;
    at = r.end;
  }
  if (at !== size) throw new Error(`ranges end at ${at}, input is ${size}`);
  let total = 0;
  for (const p of plan.pieces) {
    if (p.kind === 'file') {
      if (p.offset < 0 || p.length <= 0 || p.offset + p.length > size) throw new Error(`file piece out of bounds: ${JSON.stringify(p)}`);
      total += p.length;
    } else if (p.kind === 'zero') {
      if (p.length <= 0) throw new Error('empty zero piece');
      total += p.length;
    } else {
      total += p.data.length;
    }
  }
  if (total !== plan.canonicalSize) throw new Error(`pieces sum to ${total}, canonicalSize ${plan.canonicalSize}`);
  const rewritten = plan.ranges.some((r) => r.disposition === 'rewritten');
  if (!rewritten && presentBytes !== plan.canonicalSize) {
    throw new Error(`kept+zeroed ranges ${presentBytes} != canonicalSize ${plan.canonicalSize}`);
  }
}

const MAGICS: Record<string, number[]> = {
  elf32le: [0x7f, 0x45, 0x4c, 0x46, 1, 1, 1],
  elf64le: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1],
  elf64be: [0x7f, 0x45, 0x4c, 0x46, 2, 2, 1],
  pe: [0x4d, 0x5a],
  wasm: [0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
};

/** Random bytes behind a format's magic: exercises every early refusal path. */
export const randomWithMagic = fc
  .tuple(fc.constantFrom(...Object.values(MAGICS)), fc.uint8Array({ maxLength: 4096 }))
  .map(([magic, tail]) => Uint8Array.from([...magic, ...tail]));

const interestingValues = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x38, 0x20];

/** Mutations of a real seed: byte pokes (mostly in the headers), 32-bit word pokes, truncation, appends. */
export function mutationsOf(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const poke = fc.record({
    inHeader: fc.boolean(),
    where: fc.nat(),
    value: fc.oneof(fc.constantFrom(...interestingValues), fc.integer({ min: 0, max: 255 })),
    word: fc.option(fc.constantFrom(0, 0xffffffff, 0x7fffffff, 0x80000000, 0x1000, 0xffff), { nil: undefined }),
  });
  return fc
    .record({
      seed: fc.constantFrom(...seeds),
      pokes: fc.array(poke, { minLength: 1, maxLength: 8 }),
      truncate: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { freq: 4, nil: undefined }),
      append: fc.option(fc.uint8Array({ maxLength: 64 }), { freq: 6, nil: undefined }),
    })
    .map(({ seed, pokes, truncate, append }) => {
      let out = Uint8Array.from(seed);
      for (const p of pokes) {
        const span = p.inHeader ? Math.min(out.length, 4096) : out.length;
        if (span === 0) continue;
        const at = p.where % span;
        if (p.word !== undefined && at + 4 <= out.length) new DataView(out.buffer).setUint32(at, p.word, true);
        else out[at] = p.value;
      }
      if (truncate !== undefined) out = out.subarray(0, Math.floor(out.length * truncate));
      if (append !== undefined) {
        const longer = new Uint8Array(out.length + append.length);
        longer.set(out);
        longer.set(append, out.length);
        out = longer;
      }
      return out;
    });
}

/** Run the properties for about `seconds` in total, spread over the arbitraries. */
export function fuzzFor(seconds: number, seedsByFormat: Record<string, Uint8Array[]>, log: (line: string) => void = () => {}): void {
  const targets: [string, fc.Arbitrary<Uint8Array>][] = [['random-with-magic', randomWithMagic]];
  for (const [format, seeds] of Object.entries(seedsByFormat)) {
    if (seeds.length > 0) targets.push([`mutated-${format}`, mutationsOf(seeds)]);
  }
  const budgetMs = (seconds * 1000) / targets.length;
  for (const [name, arb] of targets) {
    let runs = 0;
    let refused = 0;
    fc.assert(
      fc.property(arb, (bytes) => {
        runs++;
        if (checkInput(bytes) instanceof VirtOffloadError) refused++;
        if (bytes[0] === 0x4d && bytes[1] === 0x5a) checkInput(bytes, 'authenticode');
      }),
      { interruptAfterTimeLimit: budgetMs, numRuns: Number.MAX_SAFE_INTEGER },
    );
    log(`${name}: ${runs} inputs, ${refused} refused, ${runs - refused} planned`);
  }
}
