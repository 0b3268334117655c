// Unit tests of the WebAssembly canonicalizer (profile v1) on modules built byte by byte here:
// padded sizes, dropped debug sections, kept linking sections, and every refusal.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MalformedBinaryError, UnsupportedBinaryError } from '../../lib/errors.js';
import { bufferReader, formatExplanation, measure, planCanonical, type CanonicalPlan } from '../../lib/measure/index.js';
import { MAX_WASM_SECTIONS, planWasm } from '../../lib/measure/wasm.js';
import { decodeU32Leb, encodeU32Leb, invalidUtf8At } from '../../lib/measure/wasm-encoding.js';
import { assertTiles } from '../helpers/plans.js';
import { leb } from '../helpers/leb128.js';

// ---- a tiny module builder -------------------------------------------------------------

type Bytes = readonly number[];
const HEADER: Bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];


const utf8 = (text: string): number[] => [...new TextEncoder().encode(text)];
const section = (id: number, content: Bytes, width = 0): number[] => [id, ...leb(content.length, width), ...content];
const custom = (name: string | Bytes, payload: Bytes = [1, 2, 3], width = 0): number[] => {
  const nameBytes = typeof name === 'string' ? utf8(name) : [...name];
  return section(0, [...leb(nameBytes.length), ...nameBytes, ...payload], width);
};
const wasm = (...sections: Bytes[]): Uint8Array => Uint8Array.from([...HEADER, ...sections.flat()]);

// `(module (func (export "f") (result i32) i32.const 42))`, one section at a time, so tests
// can pad, reorder and interleave them. `k` is the constant, to make a "code change".
const typeSec = (w = 0) => section(1, [0x01, 0x60, 0x00, 0x01, 0x7f], w);
const funcSec = (w = 0) => section(3, [0x01, 0x00], w);
const exportSec = (w = 0) => section(7, [0x01, 0x01, 0x66, 0x00, 0x00], w);
const codeSec = (w = 0, k = 42) => section(10, [0x01, 0x04, 0x00, 0x41, k, 0x0b], w);
const base = () => wasm(typeSec(), funcSec(), exportSec(), codeSec());

// ---- helpers -------------------------------------------------------------------------

async function measureBytes(bytes: Uint8Array): Promise<{ measurement: string; canonical: Uint8Array; details: Readonly<Record<string, string | number>> }> {
  const chunks: Uint8Array[] = [];
  const r = await measure(bufferReader(bytes), { onChunk: (c) => chunks.push(c.slice()) });
  assert.is(r.format, 'wasm');
  const canonical = Uint8Array.from(chunks.flatMap((c) => [...c]));
  assert.is(canonical.length, r.hashedBytes);
  return { measurement: r.measurement, canonical, details: r.details };
}

const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

// Node's own engine, to show that the canonical bytes are still a module V8 accepts.
const engine = (globalThis as unknown as { WebAssembly: { validate(bytes: Uint8Array): boolean } }).WebAssembly;


function assertRefused(bytes: Uint8Array, cls: typeof MalformedBinaryError | typeof UnsupportedBinaryError, fragment: string): void {
  try {
    planWasm(bufferReader(bytes));
  } catch (err) {
    assert.instance(err, cls, `${fragment}: ${String(err)}`);
    assert.ok((err as Error).message.includes(fragment), `message "${(err as Error).message}" should contain "${fragment}"`);
    return;
  }
  assert.unreachable(`expected ${cls.name} containing "${fragment}"`);
}

// ---- encodings ------------------------------------------------------------------------

test('LEB128 u32: minimal encoding round-trips, padded forms decode to the same value', () => {
  for (const v of [0, 1, 127, 128, 16383, 16384, 2 ** 28 - 1, 2 ** 28, 2 ** 32 - 1]) {
    const minimal = encodeU32Leb(v);
    assert.equal([...minimal], leb(v), `minimal encoding of ${v}`);
    assert.equal(decodeU32Leb(minimal, 0, minimal.length, 0, 'x', 'end'), { value: v, length: minimal.length });
    const padded = Uint8Array.from(leb(v, 5));
    assert.equal(decodeU32Leb(padded, 0, 5, 0, 'x', 'end'), { value: v, length: 5 });
  }
  assert.equal([...encodeU32Leb(2 ** 32 - 1)], [0xff, 0xff, 0xff, 0xff, 0x0f]);
});

test('strict UTF-8: accepts all well-formed sequences, refuses overlongs, surrogates, > U+10FFFF, cut sequences', () => {
  for (const ok of ['', 'name', 'é', '€', '𝄞', '\u{10ffff}', '\u{d7ff}', '\u{e000}', 'a\u0000b']) {
    assert.is(invalidUtf8At(Uint8Array.from(utf8(ok))), -1, JSON.stringify(ok));
  }
  const bad: [number[], number][] = [
    [[0x80], 0], // stray continuation
    [[0x61, 0xc0, 0x80], 1], // overlong NUL
    [[0xc1, 0xbf], 0], // overlong 2-byte
    [[0xe0, 0x80, 0x80], 0], // overlong 3-byte
    [[0xf0, 0x80, 0x80, 0x80], 0], // overlong 4-byte
    [[0xed, 0xa0, 0x80], 0], // U+D800 (surrogate)
    [[0xed, 0xbf, 0xbf], 0], // U+DFFF (surrogate)
    [[0xf4, 0x90, 0x80, 0x80], 0], // U+110000
    [[0xf5, 0x80, 0x80, 0x80], 0], // lead byte never valid
    [[0xff], 0],
    [[0x61, 0xe2, 0x82], 1], // "€" cut short
    [[0xe2, 0x28, 0xa1], 0], // bad continuation
  ];
  for (const [bytes, at] of bad) assert.is(invalidUtf8At(Uint8Array.from(bytes)), at, bytes.map((b) => b.toString(16)).join(' '));
});

// ---- what is measured -----------------------------------------------------------------

test('a header-only module measures as its 8 bytes', async () => {
  const bytes = wasm();
  const { measurement, canonical, details } = await measureBytes(bytes);
  assert.is(measurement, sha256(bytes));
  assert.equal([...canonical], [...HEADER]);
  assert.equal(details, { sections: 0, customSectionsKept: 'none', customSectionsDropped: 0 });
});

test('padded section sizes measure the same as minimal ones; the canonical bytes are the minimal module', async () => {
  const minimal = base();
  const padded = wasm(typeSec(5), funcSec(5), exportSec(3), codeSec(5));
  assert.ok(engine.validate(padded), 'V8 accepts the padded module');
  const a = await measureBytes(minimal);
  const b = await measureBytes(padded);
  assert.is(b.measurement, a.measurement);
  assert.is(a.measurement, sha256(minimal));
  assert.equal([...b.canonical], [...minimal]);
  assert.ok(engine.validate(b.canonical));
});

test('dropping name, producers, sourceMappingURL, external_debug_info and .debug_* sections does not change the measurement', async () => {
  const plain = await measureBytes(base());
  const names = ['name', 'producers', 'sourceMappingURL', 'external_debug_info', '.debug_info', '.debug_line', '.debug_'];
  for (const name of names) {
    const before = await measureBytes(wasm(custom(name), typeSec(), funcSec(), exportSec(), codeSec()));
    const between = await measureBytes(wasm(typeSec(), funcSec(), custom(name, [9, 9], 5), exportSec(), codeSec()));
    const after = await measureBytes(wasm(typeSec(), funcSec(), exportSec(), codeSec(), custom(name, [])));
    for (const m of [before, between, after]) {
      assert.is(m.measurement, plain.measurement, name);
      assert.is(m.details.customSectionsDropped, 1);
    }
  }
  // All of them at once, with a padded section in between.
  const all = wasm(...names.map((n) => custom(n)), typeSec(5), funcSec(), exportSec(), codeSec(), custom('name'));
  const m = await measureBytes(all);
  assert.is(m.measurement, plain.measurement);
  assert.equal(m.details, { sections: names.length + 5, customSectionsKept: 'none', customSectionsDropped: names.length + 1 });
});

test('names that only resemble the dropped ones are kept', async () => {
  const plain = await measureBytes(base());
  for (const name of ['Name', 'name ', 'names', 'producers2', '.debug', '.DEBUG_info', 'debug_info', 'external_debug', '']) {
    const m = await measureBytes(wasm(typeSec(), funcSec(), exportSec(), codeSec(), custom(name)));
    assert.is.not(m.measurement, plain.measurement, JSON.stringify(name));
    assert.is(m.details.customSectionsDropped, 0);
  }
});

test('dylink.0 is kept: adding, removing or changing it changes the measurement; its size is re-encoded too', async () => {
  const memInfo = [0x01, 0x04, 0x10, 0x02, 0x00, 0x00]; // WASM_DYLINK_MEM_INFO: memory size 16, align 2^2
  const plain = await measureBytes(base());
  const withDylink = wasm(custom('dylink.0', memInfo), typeSec(), funcSec(), exportSec(), codeSec());
  const a = await measureBytes(withDylink);
  assert.is.not(a.measurement, plain.measurement);
  assert.is(a.measurement, sha256(withDylink));
  assert.is(a.details.customSectionsKept, '"dylink.0"');
  const changed = await measureBytes(wasm(custom('dylink.0', [0x01, 0x04, 0x20, 0x02, 0x00, 0x00]), typeSec(), funcSec(), exportSec(), codeSec()));
  assert.is.not(changed.measurement, a.measurement);
  const padded = await measureBytes(wasm(custom('dylink.0', memInfo, 5), typeSec(5), funcSec(), exportSec(), codeSec()));
  assert.is(padded.measurement, a.measurement);
  // Dropping debug data next to it still does not matter.
  const withDebug = await measureBytes(wasm(custom('dylink.0', memInfo), custom('.debug_abbrev'), typeSec(), funcSec(), exportSec(), codeSec(), custom('name')));
  assert.is(withDebug.measurement, a.measurement);
});

test('unknown and target_features custom sections are kept and listed in details', async () => {
  const plain = await measureBytes(base());
  const bytes = wasm(typeSec(), custom('target_features', [0x01, 0x2b, 0x04, ...utf8('simd')]), funcSec(), exportSec(), codeSec(), custom('my.vendor.section'));
  const m = await measureBytes(bytes);
  assert.is.not(m.measurement, plain.measurement);
  assert.is(m.measurement, sha256(bytes));
  assert.equal([...m.canonical], [...bytes]);
  assert.is(m.details.customSectionsKept, '"target_features","my.vendor.section"');
  const payloadChanged = await measureBytes(wasm(typeSec(), custom('target_features', [0x01, 0x2b, 0x04, ...utf8('simd')]), funcSec(), exportSec(), codeSec(), custom('my.vendor.section', [1, 2, 4])));
  assert.is.not(payloadChanged.measurement, m.measurement);
});

test('a change in code changes the measurement', async () => {
  const a = await measureBytes(base());
  const b = await measureBytes(wasm(typeSec(), funcSec(), exportSec(), codeSec(0, 43)));
  assert.is.not(a.measurement, b.measurement);
});

test('explanation tiles the file and says what happened to each part', () => {
  const bytes = wasm(custom('name', [1]), typeSec(5), custom('target_features', [0x01, 0x00], 2), funcSec(), custom('.debug_info'), exportSec(), codeSec());
  const plan = planCanonical(bufferReader(bytes));
  assertTiles(plan, bytes.length);
  const summary = plan.ranges.map((r) => `${r.disposition} ${r.reason}`);
  assert.equal(summary, [
    'kept module header (magic \\0asm, version 1)',
    'dropped custom section "name" (debug info, not used by the engine)',
    'rewritten section 1 (type) id and size, size re-encoded minimally',
    'kept section 1 (type) content',
    'rewritten section 0 (custom "target_features") id and size, size re-encoded minimally',
    'kept custom section "target_features" content (kept: not debug data, it can change linking or what an embedder reads)',
    'rewritten section 3 (function) id and size, size re-encoded minimally',
    'kept section 3 (function) content',
    'dropped custom section ".debug_info" (DWARF debug info, not used by the engine)',
    'rewritten section 7 (export) id and size, size re-encoded minimally',
    'kept section 7 (export) content',
    'rewritten section 10 (code) id and size, size re-encoded minimally',
    'kept section 10 (code) content',
  ]);
  // The padded type section: 6 bytes of id + size rewritten to 2.
  const typeHead = plan.ranges[2]!;
  assert.is(typeHead.end - typeHead.start, 6);
  assert.equal(plan.details, { sections: 7, customSectionsKept: '"target_features"', customSectionsDropped: 2 });
});

test('hostile custom section names are escaped and shortened in reasons and details', () => {
  const evil = 'a"b\\c\n\u001b[31m\u202e\u009b x';
  const long = 'x'.repeat(5000);
  const bytes = wasm(custom(evil), custom(long), custom('.debug_' + 'y'.repeat(300)));
  const plan = planWasm(bufferReader(bytes));
  assertTiles(plan, bytes.length);
  const text = plan.ranges.map((r) => r.reason).join('\n') + String(plan.details.customSectionsKept);
  assert.ok(!/[\u0000-\u001f\u007f-\u009f\u202e]/.test(text.replace(/\n/g, '')), 'no control or bidi characters');
  assert.ok(text.includes('"a\\u{22}b\\u{5c}c\\u{a}\\u{1b}[31m\\u{202e}\\u{9b}\\u{20}x"'), text);
  assert.ok(text.includes(`"${'x'.repeat(64)}…(5000 bytes)"`));
  assert.ok(!text.includes('x'.repeat(65)));
  assert.is(plan.details.customSectionsDropped, 1);
});

test('many kept custom sections: details list is shortened', () => {
  const bytes = wasm(...Array.from({ length: 20 }, (_, i) => custom(`s${i}`)));
  const plan = planWasm(bufferReader(bytes));
  assert.is(plan.details.customSectionsKept, '"s0","s1","s2","s3","s4","s5","s6","s7" and 12 more');
  assert.is(plan.details.sections, 20);
});

// ---- refusals -------------------------------------------------------------------------

const M = MalformedBinaryError;
const U = UnsupportedBinaryError;
const header = (version: number[]) => Uint8Array.from([0x00, 0x61, 0x73, 0x6d, ...version]);
const plus = (...tail: number[]) => wasm(tail);

const refusals: [string, Uint8Array, typeof M | typeof U, string][] = [
  ['bad magic', Uint8Array.from([0x00, 0x61, 0x73, 0x6e, 1, 0, 0, 0]), M, 'magic is 00 61 73 6e'],
  ['header cut short', header([1, 0]), M, 'header truncated: the file is 6 bytes'],
  ['version 2', header([2, 0, 0, 0]), U, 'version 0x2'],
  ['version 0', header([0, 0, 0, 0]), U, 'version 0x0'],
  ['big-endian version 1', header([0, 0, 0, 1]), U, 'version 0x1000000'],
  ['component (layer 1, version 0x0d)', header([0x0d, 0x00, 0x01, 0x00]), U, 'WebAssembly component (layer 1, version 0xd)'],
  ['older component draft', header([0x0a, 0x00, 0x01, 0x00]), U, 'component'],
  ['id byte with no size (trailing partial section)', plus(0x01), M, '(id 1, type) size is truncated: its LEB128 at 0x9 runs into the end of file at 0x9'],
  ['size LEB cut by end of file', plus(0x01, 0x80, 0x80), M, 'is truncated'],
  ['size LEB longer than 5 bytes', plus(0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), M, 'longer than 5 bytes'],
  ['size LEB overflows (0x1f in 5th byte)', plus(0x01, 0xff, 0xff, 0xff, 0xff, 0x1f), M, 'overflows 32 bits (5th byte 0x1f'],
  ['size LEB of exactly 2^32', plus(0x01, 0x80, 0x80, 0x80, 0x80, 0x10), M, 'overflows 32 bits'],
  ['size past end of file', plus(0x01, 0x05, 0x01, 0x60), M, 'content extends past end of file (offset 0xa + size 0x5 > file size 0xc)'],
  ['2^32-1 size past end of file', plus(0x0b, 0xff, 0xff, 0xff, 0xff, 0x0f), M, 'extends past end of file'],
  ['custom section with no name length', plus(0x00, 0x00), M, 'name length is truncated: its LEB128 at 0xa runs into the end of the section at 0xa'],
  ['custom name length LEB runs past the section', wasm(section(0, [0x80, 0x80]), typeSec()), M, 'runs into the end of the section'],
  ['custom name length LEB overflow', plus(0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0x7f), M, 'overflows 32 bits'],
  ['custom name past section end', wasm(section(0, [0x05, 0x61]), typeSec()), M, 'name (5 bytes at 0xb) extends past the end of the section at 0xc'],
  ['custom name past section end, section past file end', plus(0x00, 0x09, 0x05, 0x61), M, 'extends past end of file'],
  ['invalid UTF-8 name (overlong)', wasm(custom([0x6e, 0xc0, 0x80])), M, 'name is not valid UTF-8 (byte 0xc0 at 0xc)'],
  ['invalid UTF-8 name (surrogate)', wasm(custom([0xed, 0xa0, 0x80])), M, 'not valid UTF-8'],
  ['invalid UTF-8 name (cut sequence)', wasm(custom([0x61, 0xe2, 0x82])), M, 'not valid UTF-8'],
  ['duplicate type section', wasm(typeSec(), typeSec()), M, 'duplicate type section (the first one is at 0x8'],
  ['duplicate code section around a custom one', wasm(typeSec(), funcSec(), codeSec(), custom('x'), codeSec()), M, 'duplicate code section'],
  ['function after code', wasm(typeSec(), codeSec(), funcSec()), M, 'out of order, the function section must come before the code section (id 10)'],
  ['datacount after code', wasm(codeSec(), section(12, [0x00])), M, 'out of order'],
  ['data before code', wasm(section(11, [0x00]), codeSec()), M, 'out of order'],
  ['memory after tag', wasm(section(13, [0x00]), section(5, [0x00])), M, 'the memory section must come before the tag section'],
  ['unknown section id 14', plus(0x0e, 0x00), M, 'unknown section id 14'],
  ['unknown section id 0xff after valid ones', wasm(typeSec(), [0xff, 0x00]), M, 'unknown section id 255'],
  ['dylink.0 not the first section', wasm(typeSec(), custom('dylink.0', [0x01, 0x00])), M, '"dylink.0" must be the module\'s first section (it is section 1)'],
  ['relocatable object (linking section)', wasm(typeSec(), custom('linking', [0x02])), U, 'relocatable object file'],
  ['relocatable object (reloc.CODE section)', wasm(typeSec(), codeSec(), custom('reloc.CODE', [0x00])), U, 'relocatable object file'],
];

for (const [name, bytes, cls, fragment] of refusals) {
  test(`refused: ${name}`, () => assertRefused(bytes, cls, fragment));
}

test('refusals carry the offset of the problem', () => {
  try {
    planWasm(bufferReader(wasm(typeSec(), typeSec())));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, MalformedBinaryError);
    assert.is((err as MalformedBinaryError).offset, 8 + typeSec().length);
  }
});

test('tag goes between memory and global; datacount between element and code: both accepted', () => {
  const bytes = wasm(typeSec(), funcSec(), section(5, [0x00]), section(13, [0x00]), section(6, [0x00]), exportSec(), section(12, [0x00]), codeSec(), section(11, [0x00]));
  const plan = planWasm(bufferReader(bytes));
  assertTiles(plan, bytes.length);
  assert.is(plan.canonicalSize, bytes.length);
});

test(`more than ${MAX_WASM_SECTIONS} sections are refused, that many are accepted`, () => {
  const tiny = [0x00, 0x01, 0x00]; // custom section with the empty name: 3 bytes, kept
  const many = (n: number) => {
    const out = new Uint8Array(8 + 3 * n);
    out.set(HEADER);
    for (let i = 0; i < n; i++) out.set(tiny, 8 + 3 * i);
    return out;
  };
  const ok = many(MAX_WASM_SECTIONS);
  const plan = planWasm(bufferReader(ok));
  assert.is(plan.details.sections, MAX_WASM_SECTIONS);
  assert.is(plan.canonicalSize, ok.length);
  assertRefused(many(MAX_WASM_SECTIONS + 1), U, `more than ${MAX_WASM_SECTIONS} sections`);
  // `measure --explain` lists every range of such a file (it once overflowed the stack).
  const lines = formatExplanation(plan.ranges);
  assert.is(lines.length, plan.ranges.length);
  assert.ok(plan.ranges.length >= MAX_WASM_SECTIONS);
});

test('measure dispatches \\0asm files here, whatever their name', async () => {
  const r = await measure(bufferReader(wasm(typeSec(5), custom('name'))));
  assert.is(r.format, 'wasm');
  assert.is(r.measurement, sha256(wasm(typeSec())));
});

test.run();
