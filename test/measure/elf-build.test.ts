// The ELF measurement against real toolchains (Debian packages gcc, binutils, elfutils, dwz):
// programs built with and without -g, then stripped, debug-stripped, dwz-compressed and
// debug-compressed all measure the same; changing a loaded byte changes the measurement,
// changing a byte of .comment or .symtab does not; the canonical image is an executable
// that behaves like the original, re-measures to itself and hashes to the measurement.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UnsupportedBinaryError } from '../../lib/errors.js';
import { measureFile } from '../../lib/io/index.js';
import type { ExplainedRange } from '../../lib/measure/index.js';
import { repoRoot, requireTool, run, scratchDir } from '../../testbed/tools.js';

const gcc = requireTool('gcc', 'gcc');
const strip = requireTool('strip', 'binutils');
const objcopy = requireTool('objcopy', 'binutils');
const readelf = requireTool('readelf', 'binutils');
const euStrip = requireTool('eu-strip', 'elfutils');
const dwz = requireTool('dwz', 'dwz');

const fixtures = join(repoRoot, 'test/fixtures/elf');
const { dir, cleanup } = scratchDir('vo-elf-');
test.after(cleanup);

let counter = 0;
const scratch = (name: string) => join(dir, `${counter++}-${name}`);

// ---- builds and variants ---------------------------------------------------------------

interface Build {
  /** Which program and how it was built, for messages. */
  readonly name: string;
  readonly source: string;
  readonly flags: readonly string[];
  /** Arguments to run it with; absent for what cannot be run directly (a shared object). */
  readonly args?: readonly string[];
}

const BUILDS: readonly Build[] = [
  { name: 'strings (PIE)', source: 'strings.c', flags: ['-O1'], args: ['alpha', 'be', 'gamma-delta'] },
  { name: 'libc (PIE, -O2)', source: 'libc.c', flags: ['-O2'], args: ['10', 'x', '200', 'ab', '3'] },
  { name: 'libc (ET_EXEC, -no-pie)', source: 'libc.c', flags: ['-O0', '-no-pie'], args: ['7', 'seven'] },
  { name: 'strings (-static)', source: 'strings.c', flags: ['-O2', '-static'], args: ['one', 'two', 'three'] },
  { name: 'libc (shared object)', source: 'libc.c', flags: ['-O1', '-shared', '-fPIC'] },
  // A real ELF32 file; measured only (running it needs the kernel's IA-32 emulation).
  { name: 'tiny32 (ELF32, i386, freestanding)', source: 'tiny32.c', flags: ['-m32', '-O1', '-nostdlib', '-static', '-fno-pic'] },
];

function compile(build: Build, debug: boolean): string {
  const out = scratch(`${build.source}${debug ? '.g' : ''}.elf`);
  run(gcc, [...build.flags, ...(debug ? ['-g'] : []), '-o', out, join(fixtures, build.source)]);
  return out;
}

/** Every variant of one build that profile v1 must measure the same, by how it was made. */
function variants(build: Build): Map<string, string> {
  const debug = compile(build, true);
  const out = new Map<string, string>([
    ['gcc -g', debug],
    ['gcc (no -g)', compile(build, false)],
  ]);
  const derive = (label: string, make: (to: string) => void) => {
    const to = scratch(label.replace(/\W+/g, '_'));
    make(to);
    out.set(label, to);
  };
  derive('strip', (to) => run(strip, ['-o', to, debug]));
  derive('strip -g', (to) => run(strip, ['-g', '-o', to, debug]));
  derive('objcopy --strip-debug', (to) => run(objcopy, ['--strip-debug', debug, to]));
  derive('eu-strip', (to) => run(euStrip, ['-o', to, debug]));
  derive('dwz', (to) => {
    copyFileSync(debug, to);
    run(dwz, [to]); // rewrites in place
  });
  derive('objcopy --compress-debug-sections', (to) => run(objcopy, ['--compress-debug-sections', debug, to]));
  return out;
}

// ---- helpers ---------------------------------------------------------------------------

interface Section {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  readonly type: string;
}

/** Section headers as `readelf -SW` prints them (name, type, address, offset, size). */
function sections(path: string): Map<string, Section> {
  const out = new Map<string, Section>();
  for (const line of run(readelf, ['-SW', path]).split('\n')) {
    const m = /^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line);
    if (m !== null) out.set(m[1]!, { name: m[1]!, type: m[2]!, offset: parseInt(m[3]!, 16), size: parseInt(m[4]!, 16) });
  }
  return out;
}

function section(path: string, name: string): Section {
  const s = sections(path).get(name);
  assert.ok(s !== undefined && s.size > 0, `${path} has a non-empty ${name} section`);
  return s!;
}

/** A copy of `path` with the byte at `offset` inverted. */
function flipped(path: string, offset: number): string {
  const bytes = readFileSync(path);
  bytes[offset] = bytes[offset]! ^ 0xff;
  const to = scratch('flipped');
  writeFileSync(to, bytes);
  chmodSync(to, 0o755);
  return to;
}

const measurementOf = async (path: string) => (await measureFile(path)).measurement;

function dispositionAt(ranges: readonly ExplainedRange[], offset: number): ExplainedRange {
  const r = ranges.find((x) => x.start <= offset && offset < x.end);
  assert.ok(r !== undefined, `offset ${offset} is explained`);
  return r!;
}

/** Measure and write the canonical bytes (from onChunk) as an executable file. */
async function writeCanonical(path: string): Promise<{ measurement: string; canonical: string; hashedBytes: number }> {
  const chunks: Buffer[] = [];
  const r = await measureFile(path, { onChunk: (c) => chunks.push(Buffer.from(c)) });
  assert.is(r.format, 'elf');
  const canonical = scratch('canonical');
  writeFileSync(canonical, Buffer.concat(chunks));
  chmodSync(canonical, 0o755);
  return { measurement: r.measurement, canonical, hashedBytes: r.hashedBytes };
}

function execute(path: string, args: readonly string[]): { stdout: string; status: number | null; signal: string | null } {
  const r = spawnSync(path, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) throw r.error;
  return { stdout: r.stdout, status: r.status, signal: r.signal };
}

/** mulberry32: a small seeded PRNG, so a failing random offset can be reproduced from the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- the tests -------------------------------------------------------------------------

const built = new Map<string, Map<string, string>>();
const variantsOf = (build: Build) => {
  let v = built.get(build.name);
  if (v === undefined) built.set(build.name, (v = variants(build)));
  return v;
};

for (const build of BUILDS) {
  test(`${build.name}: gcc -g, gcc, strip, strip -g, objcopy --strip-debug, eu-strip, dwz, compressed debug all measure the same`, async () => {
    const all = variantsOf(build);
    const debug = readFileSync(all.get('gcc -g')!);
    const reference = await measureFile(all.get('gcc -g')!);
    assert.is(reference.format, 'elf');
    assert.match(String(reference.details.buildId), /^[0-9a-f]{40}$/, 'ld wrote a sha1 build id');
    for (const [label, path] of all) {
      if (label !== 'gcc -g') {
        assert.not.ok(readFileSync(path).equals(debug), `${label} changed the file (else this variant proves nothing)`);
      }
      const r = await measureFile(path);
      assert.is(r.measurement, reference.measurement, `${build.name}: ${label} measures like gcc -g`);
      assert.is(r.hashedBytes, reference.hashedBytes, `${label}: same canonical size`);
    }
    // The -g and non -g builds differ in their build ids: the descriptor really is what is zeroed.
    const plain = await measureFile(all.get('gcc (no -g)')!);
    assert.is.not(plain.details.buildId, reference.details.buildId, 'ld hashed the debug info into the build id');
  });
}

for (const build of BUILDS.filter((b) => b.args !== undefined)) {
  test(`${build.name}: the canonical image runs like the original, re-measures the same, sha256 = measurement`, async () => {
    for (const label of ['gcc -g', 'strip']) {
      const original = variantsOf(build).get(label)!;
      const { measurement, canonical, hashedBytes } = await writeCanonical(original);
      const expected = execute(original, build.args!);
      const actual = execute(canonical, build.args!);
      assert.ok(expected.stdout.length > 0, 'the program printed something');
      assert.equal(actual, expected, `${label}: canonical and original give the same output and exit code`);
      assert.is(await measurementOf(canonical), measurement, 'measuring the canonical image is idempotent');
      const bytes = readFileSync(canonical);
      assert.is(bytes.length, hashedBytes);
      assert.is(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, measurement);
      assert.ok(bytes.length < readFileSync(original).length, 'the canonical image is smaller (sections dropped)');
      assert.is(sections(canonical).size, 0, 'no section headers are left in the canonical image');
    }
  });
}

for (const build of BUILDS.slice(0, 2)) {
  test(`${build.name}: a byte of .text, .rodata or anywhere in a loaded segment is measured; .comment and .symtab are not`, async () => {
    const path = variantsOf(build).get('gcc -g')!;
    const reference = await measureFile(path);
    const { measurement, ranges } = reference;

    for (const name of ['.text', '.rodata']) {
      const s = section(path, name);
      const at = s.offset + Math.floor(s.size / 2);
      assert.is(dispositionAt(ranges, at).disposition, 'kept', `${name} is kept`);
      assert.is.not(await measurementOf(flipped(path, at)), measurement, `changing ${name} at ${at.toString(16)} changes the measurement`);
    }

    // Random bytes that lie only in a PT_LOAD (not in a header, note or other segment).
    const seed = Date.now() >>> 0;
    const random = prng(seed);
    const loadOnly = ranges.filter((r) => r.disposition === 'kept' && /^segment \d+ \(PT_LOAD, [RWX-]{3}\)$/.test(r.reason));
    const total = loadOnly.reduce((n, r) => n + r.end - r.start, 0);
    assert.ok(total > 1000, 'plenty of segment bytes to choose from');
    for (let i = 0; i < 12; i++) {
      // The pick-th byte of the concatenated PT_LOAD-only ranges.
      let pick = Math.floor(random() * total);
      let r = loadOnly[0]!;
      for (const x of loadOnly) {
        r = x;
        if (pick < x.end - x.start) break;
        pick -= x.end - x.start;
      }
      const at = r.start + pick;
      assert.is.not(await measurementOf(flipped(path, at)), measurement, `changing kept byte ${at.toString(16)} (${r.reason}) changes the measurement (seed ${seed})`);
    }

    for (const name of ['.comment', '.symtab', '.strtab', '.debug_info']) {
      const s = section(path, name);
      const at = s.offset + Math.floor(s.size / 2);
      assert.is(dispositionAt(ranges, at).disposition, 'dropped', `${name} is dropped`);
      assert.is(await measurementOf(flipped(path, at)), measurement, `changing ${name} at ${at.toString(16)} leaves the measurement`);
    }
    // The section header table itself, and the e_shoff field that points to it.
    const shoff = Number(readFileSync(path).readBigUInt64LE(0x28));
    assert.is(await measurementOf(flipped(path, shoff + 70)), measurement, 'changing a section header leaves the measurement');
    assert.is(await measurementOf(flipped(path, 0x28)), measurement, 'changing e_shoff leaves the measurement');
  });
}

test('removing the build-id note changes the layout, and so the measurement', async () => {
  const build = BUILDS[0]!;
  const withId = variantsOf(build).get('gcc (no -g)')!;
  const without = scratch('no-build-id');
  run(gcc, [...build.flags, '-Wl,--build-id=none', '-o', without, join(fixtures, build.source)]);
  const r = await measureFile(without);
  assert.is(r.details.buildId, undefined);
  assert.is.not(r.measurement, await measurementOf(withId));
});

test('a relocatable object (gcc -c) is refused as unsupported', async () => {
  const object = scratch('object.o');
  run(gcc, ['-c', '-O1', '-o', object, join(fixtures, 'strings.c')]);
  try {
    await measureFile(object);
  } catch (err) {
    assert.instance(err, UnsupportedBinaryError);
    assert.match((err as Error).message, 'relocatable object (ET_REL');
    return;
  }
  assert.unreachable('gcc -c output must be refused');
});

test.run();
