// Unit tests of the ELF canonicalizer (profile v1) on images built byte by byte here: an
// ELF64 little-endian and an ELF32 big-endian file with their expected ranges and canonical
// bytes, layouts real linkers write that must be accepted, and a table of refusals.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MalformedBinaryError, UnsupportedBinaryError } from '../../lib/errors.js';
import { bufferReader, measure, planCanonical, type CanonicalPlan, type Disposition } from '../../lib/measure/index.js';
import { MAX_ELF_SEGMENTS } from '../../lib/measure/elf-headers.js';
import { MAX_NOTE_BYTES } from '../../lib/measure/elf-notes.js';
import { planElf } from '../../lib/measure/elf.js';
import { assertTiles } from '../helpers/plans.js';

// ---- a tiny ELF builder ----------------------------------------------------------------

const PT = { NULL: 0, LOAD: 1, DYNAMIC: 2, INTERP: 3, NOTE: 4, PHDR: 6, TLS: 7, GNU_STACK: 0x6474e551, GNU_RELRO: 0x6474e552 } as const;
const R = 4, W = 2, X = 1;

type Num = number | bigint;
interface Seg {
  type: number;
  flags?: number;
  offset: Num;
  vaddr: Num;
  filesz: Num;
  memsz?: Num;
  align?: Num;
}
interface Spec {
  is64: boolean;
  le: boolean;
  size: number;
  segments: Seg[];
  type?: number;
  machine?: number;
  version?: number;
  phoff?: number;
  phnum?: number;
  ehsize?: number;
  phentsize?: number;
  /** Raw bytes written last, over everything else: [offset, bytes]. */
  patches?: [number, number[]][];
}

/** Fill with a recognisable non-zero pattern, so zeroed and kept bytes can be told apart. */
const fill = (i: number) => (i * 7 + 1) & 0xff || 0x5a;

function buildElf(spec: Spec): Uint8Array {
  const { is64, le } = spec;
  const bytes = Uint8Array.from({ length: spec.size }, (_, i) => fill(i));
  const view = new DataView(bytes.buffer);
  const ehsize = spec.ehsize ?? (is64 ? 64 : 52);
  const phentsize = spec.phentsize ?? (is64 ? 56 : 32);
  const phoff = spec.phoff ?? ehsize;
  const u16 = (at: number, v: number) => view.setUint16(at, v, le);
  const u32 = (at: number, v: Num) => view.setUint32(at, Number(v), le);
  const word = (at: number, v: Num) => (is64 ? view.setBigUint64(at, BigInt(v), le) : view.setUint32(at, Number(v), le));
  bytes.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, le ? 1 : 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  u16(16, spec.type ?? 2);
  u16(18, spec.machine ?? (is64 ? 62 : 20));
  u32(20, spec.version ?? 1);
  word(24, 0x1000); // e_entry
  word(is64 ? 32 : 28, phoff);
  word(is64 ? 40 : 32, spec.size - 0x40); // e_shoff: "section headers" near the end
  const f = is64 ? 48 : 36;
  u32(f, 0);
  u16(f + 4, ehsize);
  u16(f + 6, phentsize);
  u16(f + 8, spec.phnum ?? spec.segments.length);
  u16(f + 10, is64 ? 64 : 40); // e_shentsize
  u16(f + 12, 3); // e_shnum
  u16(f + 14, 2); // e_shstrndx
  spec.segments.forEach((s, i) => {
    const at = phoff + i * phentsize;
    if (at + phentsize > spec.size) return;
    u32(at, s.type);
    if (is64) {
      u32(at + 4, s.flags ?? R);
      word(at + 8, s.offset);
      word(at + 16, s.vaddr);
      word(at + 24, s.vaddr);
      word(at + 32, s.filesz);
      word(at + 40, s.memsz ?? s.filesz);
      word(at + 48, s.align ?? 1);
    } else {
      word(at + 4, s.offset);
      word(at + 8, s.vaddr);
      word(at + 12, s.vaddr);
      word(at + 16, s.filesz);
      word(at + 20, s.memsz ?? s.filesz);
      u32(at + 24, s.flags ?? R);
      word(at + 28, s.align ?? 1);
    }
  });
  for (const [at, data] of spec.patches ?? []) bytes.set(data, at);
  return bytes;
}

/** One note: 12-byte header, name, descriptor; the descriptor and the next note start `align`-aligned. */
function note(le: boolean, type: number, name: number[], desc: number[], align = 4): number[] {
  const pad = (a: number[]) => [...a, ...new Array((align - (a.length % align)) % align).fill(0)];
  const head = new DataView(new ArrayBuffer(12));
  head.setUint32(0, name.length, le);
  head.setUint32(4, desc.length, le);
  head.setUint32(8, type, le);
  return pad([...pad([...new Uint8Array(head.buffer), ...name]), ...desc]);
}
const GNU = [0x47, 0x4e, 0x55, 0];
const buildIdNote = (le: boolean, length = 20, align = 4) => note(le, 3, GNU, Array.from({ length }, (_, i) => 0xb0 + i), align);
const abiTagNote = (le: boolean) => note(le, 1, GNU, [0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);

// The ELF64 LE image: PHDR, a read-only LOAD over the headers and a build-id note, the
// note segment, and an R-X LOAD with a .bss tail; "section headers" after the last segment.
// The note sits at 0x1a0 so that the table can grow to 6 entries (0x40..0x190) in the cases below.
const BUILD_ID_NOTE_64 = buildIdNote(true); // 36 bytes at 0x1a0, descriptor at 0x1b0..0x1c4
const elf64Spec = (): Spec => ({
  is64: true,
  le: true,
  type: 3,
  size: 0x1400,
  segments: [
    { type: PT.PHDR, offset: 0x40, vaddr: 0x40, filesz: 4 * 56, align: 8 },
    { type: PT.LOAD, offset: 0, vaddr: 0, filesz: 0x200, align: 0x1000 },
    { type: PT.NOTE, offset: 0x1a0, vaddr: 0x1a0, filesz: BUILD_ID_NOTE_64.length, align: 4 },
    { type: PT.LOAD, flags: R | X, offset: 0x1000, vaddr: 0x1000, filesz: 0x100, memsz: 0x180, align: 0x1000 },
  ],
  patches: [[0x1a0, BUILD_ID_NOTE_64]],
});

// The ELF32 BE image: an R-X LOAD over the headers and two notes (ABI tag, then an 8-byte
// build id), and an RW LOAD holding PT_DYNAMIC; nothing after the last segment.
const NOTES_32 = [...abiTagNote(false), ...buildIdNote(false, 8)]; // 32 + 24 bytes at 0x100
const elf32Spec = (): Spec => ({
  is64: false,
  le: false,
  size: 0x240,
  segments: [
    { type: PT.LOAD, flags: R | X, offset: 0, vaddr: 0x10000, filesz: 0x180, align: 0x10000 },
    { type: PT.NOTE, offset: 0x100, vaddr: 0x10100, filesz: NOTES_32.length, align: 4 },
    { type: PT.LOAD, flags: R | W, offset: 0x200, vaddr: 0x20200, filesz: 0x40, memsz: 0x100, align: 0x10000 },
    { type: PT.DYNAMIC, flags: R | W, offset: 0x210, vaddr: 0x20210, filesz: 0x20, align: 4 },
    { type: PT.GNU_STACK, flags: R | W, offset: 0, vaddr: 0, filesz: 0, align: 16 },
  ],
  patches: [[0x100, NOTES_32]],
});

// ---- helpers -------------------------------------------------------------------------

type Row = [start: number, end: number, disposition: Disposition];
const rows = (plan: CanonicalPlan): Row[] => plan.ranges.map((r) => [r.start, r.end, r.disposition]);


/** What the canonical bytes must be: the input's prefix with the given ranges zeroed. */
function expectedCanonical(bytes: Uint8Array, prefixEnd: number, zeroed: [number, number][]): Uint8Array {
  const out = bytes.slice(0, prefixEnd);
  for (const [s, e] of zeroed) out.fill(0, s, e);
  return out;
}

async function canonicalOf(bytes: Uint8Array): Promise<{ measurement: string; canonical: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  const r = await measure(bufferReader(bytes), { onChunk: (c) => chunks.push(c.slice()) });
  assert.is(r.format, 'elf');
  const canonical = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    canonical.set(c, at);
    at += c.length;
  }
  assert.is(canonical.length, r.hashedBytes);
  return { measurement: r.measurement, canonical };
}

const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function refusal(bytes: Uint8Array): Error {
  try {
    planElf(bufferReader(bytes));
  } catch (err) {
    return err as Error;
  }
  return assert.unreachable('expected a refusal') as never;
}

function assertRefused(bytes: Uint8Array, cls: typeof MalformedBinaryError | typeof UnsupportedBinaryError, fragment: string, what: string): void {
  const err = refusal(bytes);
  assert.instance(err, cls, `${what}: ${String(err)}`);
  assert.ok(err.message.includes(fragment), `${what}: message "${err.message}" should contain "${fragment}"`);
}

/** Replace segment `i` of a spec (keeping the rest). */
function withSegment(spec: Spec, i: number, change: Partial<Seg>): Spec {
  return { ...spec, segments: spec.segments.map((s, j) => (j === i ? { ...s, ...change } : s)) };
}
function withSegments(spec: Spec, ...extra: Seg[]): Spec {
  return { ...spec, segments: [...spec.segments, ...extra] };
}

// ---- what is measured -----------------------------------------------------------------

test('ELF64 LE: header kept with e_sh* zeroed, segments kept, gaps and build-id descriptor zeroed, tail dropped', async () => {
  const bytes = buildElf(elf64Spec());
  const plan = planCanonical(bufferReader(bytes));
  assertTiles(plan, bytes.length);
  assert.equal(rows(plan), [
    [0x0, 0x28, 'kept'],
    [0x28, 0x30, 'zeroed'], // e_shoff
    [0x30, 0x3a, 'kept'],
    [0x3a, 0x40, 'zeroed'], // e_shentsize, e_shnum, e_shstrndx
    [0x40, 0x120, 'kept'], // program header table, PT_PHDR, LOAD
    [0x120, 0x1a0, 'kept'], // LOAD only
    [0x1a0, 0x1b0, 'kept'], // note header and name
    [0x1b0, 0x1c4, 'zeroed'], // build-id descriptor
    [0x1c4, 0x200, 'kept'],
    [0x200, 0x1000, 'zeroed'], // between the LOADs
    [0x1000, 0x1100, 'kept'],
    [0x1100, 0x1400, 'dropped'],
  ]);
  const reasons = plan.ranges.map((r) => r.reason);
  assert.match(reasons[0]!, 'ELF header');
  assert.match(reasons[0]!, 'segment 1 (PT_LOAD, R--)');
  assert.match(reasons[1]!, 'e_shoff');
  assert.match(reasons[3]!, 'e_shentsize, e_shnum, e_shstrndx');
  assert.match(reasons[4]!, 'program header table');
  assert.match(reasons[4]!, 'segment 0 (PT_PHDR, R--)');
  assert.is(reasons[5], 'segment 1 (PT_LOAD, R--)');
  assert.match(reasons[6]!, 'segment 2 (PT_NOTE, R--)');
  assert.match(reasons[7]!, 'NT_GNU_BUILD_ID');
  assert.is(reasons[9], 'not in any segment');
  assert.is(reasons[10], 'segment 3 (PT_LOAD, R-X)');
  assert.match(reasons[11]!, 'section headers');
  assert.equal(plan.details, {
    class: 'ELF64',
    data: 'LE',
    type: 'ET_DYN',
    machine: 'x86-64',
    segments: 4,
    loadSegments: 2,
    buildId: BUILD_ID_NOTE_64.slice(16).map((b) => b.toString(16)).join(''),
  });

  const { measurement, canonical } = await canonicalOf(bytes);
  const expected = expectedCanonical(bytes, 0x1100, [[0x28, 0x30], [0x3a, 0x40], [0x1b0, 0x1c4], [0x200, 0x1000]]);
  assert.equal([...canonical], [...expected]);
  assert.is(measurement, sha256(expected));
});

test('ELF32 BE: fields read big-endian; both notes parsed, only the build-id descriptor zeroed', async () => {
  const bytes = buildElf(elf32Spec());
  const plan = planCanonical(bufferReader(bytes));
  assertTiles(plan, bytes.length);
  // The 32-bit header puts e_shoff at 0x20 and e_shentsize..e_shstrndx at 0x2e..0x34.
  assert.equal(rows(plan), [
    [0x0, 0x20, 'kept'],
    [0x20, 0x24, 'zeroed'],
    [0x24, 0x2e, 'kept'],
    [0x2e, 0x34, 'zeroed'],
    [0x34, 0xd4, 'kept'], // program header table (5 x 32 bytes) in the LOAD
    [0xd4, 0x100, 'kept'], // LOAD only
    [0x100, 0x130, 'kept'], // ABI tag note and the build-id note's header and name
    [0x130, 0x138, 'zeroed'], // 8-byte build id
    [0x138, 0x180, 'kept'],
    [0x180, 0x200, 'zeroed'],
    [0x200, 0x210, 'kept'],
    [0x210, 0x230, 'kept'], // PT_DYNAMIC inside the RW LOAD
    [0x230, 0x240, 'kept'],
  ]);
  assert.equal(plan.details, { class: 'ELF32', data: 'BE', type: 'ET_EXEC', machine: 'ppc', segments: 5, loadSegments: 2, buildId: 'b0b1b2b3b4b5b6b7' });
  const { canonical } = await canonicalOf(bytes);
  assert.equal([...canonical], [...expectedCanonical(bytes, 0x240, [[0x20, 0x24], [0x2e, 0x34], [0x130, 0x138], [0x180, 0x200]])]);
});

test('changing e_sh* fields, gap bytes, the build id or the tail does not change the measurement; a kept byte does', async () => {
  const base = buildElf(elf64Spec());
  const { measurement } = await canonicalOf(base);
  const flip = (at: number) => {
    const copy = base.slice();
    copy[at] = copy[at]! ^ 0xff;
    return copy;
  };
  for (const at of [0x28, 0x2f, 0x3a, 0x3f, 0x1b0, 0x1c3, 0x200, 0xfff, 0x1100, 0x13ff]) {
    assert.is((await canonicalOf(flip(at))).measurement, measurement, `byte ${at.toString(16)} is not measured`);
  }
  for (const at of [0x8, 0x18, 0x30, 0x40, 0x1af, 0x1c4, 0x1ff, 0x1000, 0x10ff]) {
    assert.is.not((await canonicalOf(flip(at))).measurement, measurement, `byte ${at.toString(16)} is measured`);
  }
  // A truncated copy (as sstrip would write) measures the same.
  assert.is((await canonicalOf(base.slice(0, 0x1100))).measurement, measurement);
});

test('the ELF32 BE image read with the wrong byte order is refused, not misread', () => {
  const bytes = buildElf(elf32Spec());
  bytes[5] = 1; // claim little-endian
  assert.throws(() => planElf(bufferReader(bytes)), (err: unknown) => err instanceof MalformedBinaryError || err instanceof UnsupportedBinaryError);
});

// ---- layouts real linkers write, accepted ----------------------------------------------

test('accepted: 8-byte aligned property notes, missing final note padding, lld PT_GNU_RELRO past its LOAD, unloaded segments', () => {
  const le = true;
  // 8-byte aligned notes (NT_GNU_PROPERTY_TYPE_0 on 64-bit), name padded to 8.
  const prop = note(le, 5, GNU, [2, 0, 0, 0xc0, 4, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0], 8);
  assert.is(prop.length, 32);
  let spec = withSegments(elf64Spec(), { type: PT.NOTE, offset: 0x1d0, vaddr: 0x1d0, filesz: prop.length, align: 8 });
  spec = { ...spec, patches: [...spec.patches!, [0x1d0, prop]] };
  // The table now has 5 entries and reaches 0x158; PT_PHDR must say so.
  spec = withSegment(spec, 0, { filesz: 5 * 56 });
  assert.is(planElf(bufferReader(buildElf(spec))).details.segments, 5);

  // A build-id note whose last padding is cut by the segment end (descsz 18 -> 2 bytes short).
  const short = buildIdNote(le, 18).slice(0, 12 + 4 + 18);
  const s2 = withSegment({ ...elf64Spec(), patches: [[0x1a0, short]] }, 2, { filesz: short.length });
  assert.match(planElf(bufferReader(buildElf(s2))).ranges.map((r) => r.reason).join('|'), 'NT_GNU_BUILD_ID');

  // lld >= 18: PT_GNU_RELRO has p_filesz = p_memsz, past its LOAD's file bytes into the next LOAD's.
  const relro = withSegments(elf64Spec(), { type: PT.GNU_RELRO, offset: 0x1080, vaddr: 0x1080, filesz: 0x100, memsz: 0x100 });
  const relroSpec = withSegment(relro, 0, { filesz: 5 * 56 });
  const plan = planElf(bufferReader(buildElf(relroSpec)));
  assertTiles(plan, 0x1400);
  assert.equal(plan.ranges.at(-1), { start: 0x1180, end: 0x1400, disposition: 'dropped', reason: plan.ranges.at(-1)!.reason });

  // A segment whose file bytes and address are both outside every PT_LOAD; zero-size segments anywhere.
  const unloaded = withSegments(
    withSegment(elf64Spec(), 0, { filesz: 6 * 56 }),
    { type: 0x60000001, offset: 0x1200, vaddr: 0x900000, filesz: 0x10 },
    { type: PT.GNU_STACK, flags: R | W, offset: 0xffffffffffffff00n, vaddr: 0, filesz: 0, align: 16 },
  );
  const p3 = planElf(bufferReader(buildElf(unloaded)));
  assertTiles(p3, 0x1400);
  assert.equal(p3.ranges.at(-2), { start: 0x1200, end: 0x1210, disposition: 'kept', reason: 'segment 4 (PT_0x60000001, R--)' });
});

test('PT_INTERP: the path is reported, escaped', () => {
  const path = [...new TextEncoder().encode('/lib/ld\n.so'), 0];
  const spec = withSegment(withSegments(elf64Spec(), { type: PT.INTERP, offset: 0x1e0, vaddr: 0x1e0, filesz: path.length }), 0, { filesz: 5 * 56 });
  spec.patches!.push([0x1e0, path]);
  assert.is(planElf(bufferReader(buildElf(spec))).details.interpreter, '/lib/ld\\x0a.so');
});

// ---- refusals --------------------------------------------------------------------------

type Case = [what: string, bytes: () => Uint8Array, cls: typeof MalformedBinaryError | typeof UnsupportedBinaryError, fragment: string];
const M = MalformedBinaryError;
const U = UnsupportedBinaryError;
const b64 = (change: (s: Spec) => Spec) => () => buildElf(change(elf64Spec()));
const b32 = (change: (s: Spec) => Spec) => () => buildElf(change(elf32Spec()));
const patched = (bytes: Uint8Array, at: number, data: number[]) => {
  bytes.set(data, at);
  return bytes;
};
const u16le = (v: number) => [v & 0xff, v >> 8];

const cases: Case[] = [
  ['e_ident truncated', () => buildElf(elf64Spec()).slice(0, 10), M, 'ELF identification truncated'],
  ['ELF64 header truncated', () => buildElf(elf64Spec()).slice(0, 40), M, 'ELF header truncated'],
  ['bad EI_CLASS', () => patched(buildElf(elf64Spec()), 4, [3]), M, 'bad EI_CLASS 3'],
  ['bad EI_DATA', () => patched(buildElf(elf64Spec()), 5, [0]), M, 'bad EI_DATA 0'],
  ['bad EI_VERSION', () => patched(buildElf(elf64Spec()), 6, [2]), M, 'bad EI_VERSION 2'],
  ['bad e_version', b64((s) => ({ ...s, version: 0 })), M, 'bad e_version 0'],
  ['e_ehsize wrong for the class', b64((s) => ({ ...s, ehsize: 52, phoff: 0x40 })), M, 'e_ehsize is 52'],
  ['e_phentsize wrong for the class', b32((s) => ({ ...s, phentsize: 56 })), M, 'e_phentsize is 56'],
  ['ET_REL', b64((s) => ({ ...s, type: 1 })), U, 'relocatable object (ET_REL'],
  ['ET_REL with no program headers', b64((s) => ({ ...s, type: 1, segments: [] })), U, 'executables and shared objects only'],
  ['ET_CORE', b64((s) => ({ ...s, type: 4 })), U, 'core dump (ET_CORE)'],
  ['ET_NONE', b64((s) => ({ ...s, type: 0 })), U, 'ELF type 0x0'],
  ['e_phnum 0', b64((s) => ({ ...s, phnum: 0 })), M, 'e_phnum is 0'],
  ['e_phnum PN_XNUM', b64((s) => ({ ...s, phnum: 0xffff })), M, 'PN_XNUM'],
  ['more program headers than the cap', () => patched(buildElf(elf64Spec()), 0x38, u16le(MAX_ELF_SEGMENTS + 1)), U, `at most ${MAX_ELF_SEGMENTS} program headers`],
  ['phdr table past EOF', b64((s) => ({ ...s, phoff: 0x1400 - 100 })), M, 'program header table extends past end of file (offset 0x139c + size 0xe0 > file size 0x1400)'],
  ['phdr table offset near 2^64', () => patched(buildElf(elf64Spec()), 0x20, [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), M, 'program header table extends past end of file'],
  ['phdr table overlapping the ELF header', () => patched(buildElf(elf64Spec()), 0x20, [0x30, 0, 0, 0, 0, 0, 0, 0]), M, 'program header table at 0x30 overlaps the ELF header (0x0..0x40)'],
  ['no PT_LOAD', b64((s) => ({ ...s, segments: s.segments.filter((g) => g.type !== PT.LOAD) })), M, 'no PT_LOAD'],
  ['segment past EOF', b64((s) => withSegment(s, 3, { filesz: 0x500, memsz: 0x500 })), M, 'segment 3 (PT_LOAD, R-X) extends past end of file (offset 0x1000 + size 0x500 > file size 0x1400)'],
  ['segment offset + size overflows 2^64', b64((s) => withSegment(s, 2, { offset: 0xfffffffffffff000n, filesz: 0x2000 })), M, 'segment 2 (PT_NOTE, R--) extends past end of file (offset 0xfffffffffffff000'],
  ['ELF32 segment offset + size overflows 2^32', b32((s) => withSegment(s, 3, { offset: 0xfffffff0, filesz: 0x20 })), M, 'segment 3 (PT_DYNAMIC, RW-) extends past end of file'],
  ['PT_LOAD filesz > memsz', b64((s) => withSegment(s, 3, { memsz: 0x80 })), M, 'p_filesz 0x100 > p_memsz 0x80'],
  ['overlapping PT_LOAD virtual ranges', b64((s) => withSegment(s, 3, { vaddr: 0 })), M, 'virtual range starting at 0x0 overlaps segment 1 (PT_LOAD, R--)'],
  ['PT_LOADs out of p_vaddr order', b64((s) => withSegment(s, 1, { vaddr: 0x2000, offset: 0 })), M, 'not in ascending p_vaddr order'],
  ['misaligned PT_LOAD', b64((s) => withSegment(s, 3, { vaddr: 0x1800 })), M, 'differ modulo p_align 0x1000'],
  ['PT_LOAD p_align not a power of two', b64((s) => withSegment(s, 3, { align: 0x3000 })), M, 'not a power of two'],
  ['ELF32 PT_LOAD wrapping the address space', b32((s) => withSegment(s, 2, { vaddr: 0xffff0200, memsz: 0x20000 })), M, 'wraps past the end of the address space'],
  ['PT_DYNAMIC with a different vaddr-offset delta', b32((s) => withSegment(s, 3, { vaddr: 0x20220 })), M, 'lies inside segment 2 (PT_LOAD, RW-) in the file, but at p_vaddr 0x20220'],
  ['PT_DYNAMIC partially overlapping a PT_LOAD', b32((s) => withSegment(s, 3, { offset: 0x1f0, vaddr: 0x201f0 })), M, 'partially overlaps segment 2 (PT_LOAD, RW-)'],
  ['unloaded PT_DYNAMIC whose address is in a PT_LOAD', b32((s) => withSegment(s, 3, { offset: 0x1a0, vaddr: 0x20210 })), M, "lies in segment 2 (PT_LOAD, RW-)'s memory"],
  ['two PT_DYNAMIC', b32((s) => withSegments(s, s.segments[3]!)), M, 'a second PT_DYNAMIC'],
  ['PT_PHDR not describing the table', b64((s) => withSegment(s, 0, { filesz: 3 * 56 })), M, 'is not the program header table'],
  ['note descriptor past the segment', b64((s) => withSegment(s, 2, { filesz: 0x20 })), M, 'extends past the end of the segment at 0x1c0'],
  ['trailing bytes after the notes', b64((s) => withSegment(s, 2, { filesz: BUILD_ID_NOTE_64.length + 8 })), M, '8 bytes left at 0x1c4, too few for a note header'],
  ['note with a huge descsz', b64((s) => ({ ...s, patches: [...s.patches!, [0x1a4, [0xff, 0xff, 0xff, 0xff]]] })), M, 'descsz 0xffffffff'],
  ['PT_NOTE with p_align 2', b64((s) => withSegment(s, 2, { align: 2 })), M, 'p_align 0x2'],
  ['PT_NOTE with p_align 8 at an offset that is not a multiple of 8', b64((s) => withSegment(s, 2, { align: 8, offset: 0x1a4, vaddr: 0x1a4 })), M, 'is not a multiple of its p_align 8'],
  [
    'note segments over 1 MiB in total',
    () => {
      const size = 0xa0000 + 0x1000;
      const notes = Array.from({ length: 0xa0000 / 16 }, () => note(true, 1, [], [1, 2, 3, 4])).flat();
      const spec: Spec = { is64: true, le: true, size, segments: [{ type: PT.LOAD, offset: 0, vaddr: 0, filesz: size }, ...[0, 1].map(() => ({ type: PT.NOTE, offset: 0x1000, vaddr: 0x1000, filesz: 0xa0000, align: 4 }))], patches: [[0x1000, notes]] };
      return buildElf(spec);
    },
    U,
    `more than ${MAX_NOTE_BYTES} bytes`,
  ],
  [
    'two different build-id notes',
    b64((s) => ({ ...withSegment(s, 2, { filesz: 72 }), patches: [[0x1a0, [...buildIdNote(true), ...buildIdNote(true)]]] })),
    M,
    'two NT_GNU_BUILD_ID notes (descriptors at 0x1b0 and 0x1d4)',
  ],
  [
    'build-id descriptor overlapping PT_DYNAMIC',
    b64((s) => withSegment(withSegments(s, { type: PT.DYNAMIC, offset: 0x1b8, vaddr: 0x1b8, filesz: 0x10 }), 0, { filesz: 5 * 56 })),
    M,
    'the NT_GNU_BUILD_ID descriptor at [0x1b0, 0x1c4) overlaps segment 4 (PT_DYNAMIC, R--), which zeroing would change',
  ],
  [
    'build-id descriptor overlapping the program header table',
    b64((s) => ({
      ...withSegment(withSegment({ ...s, phoff: 0x100 }, 0, { offset: 0x100, vaddr: 0x100 }), 2, { offset: 0xf0, vaddr: 0xf0 }),
      patches: [[0xf0, BUILD_ID_NOTE_64.slice(0, 16)]], // header and name; the descriptor is the table
    })),
    M,
    'the NT_GNU_BUILD_ID descriptor at [0x100, 0x114) overlaps the program header table',
  ],
  [
    'build-id descriptor overlapping another PT_NOTE that reads it differently',
    b64((s) => ({
      ...withSegment(withSegments(s, { type: PT.NOTE, offset: 0x1bc, vaddr: 0x1bc, filesz: 12, align: 4 }), 0, { filesz: 5 * 56 }),
      patches: [[0x1a0, BUILD_ID_NOTE_64], [0x1bc, [0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]]],
    })),
    M,
    'overlaps segment 4 (PT_NOTE, R--)',
  ],
  [
    'e_shoff inside a PT_INTERP',
    b64((s) => ({ ...withSegment(withSegments(s, { type: PT.INTERP, offset: 0x20, vaddr: 0x20, filesz: 0x20 }), 0, { filesz: 5 * 56 }), patches: [...s.patches!, [0x3f, [0]]] })),
    M,
    'e_shoff at [0x28, 0x30) overlaps segment 4 (PT_INTERP, R--), which zeroing would change',
  ],
  ['two PT_INTERP', b64((s) => ({ ...withSegment(withSegments(s, ...[0, 1].map(() => ({ type: PT.INTERP, offset: 0x1e0, vaddr: 0x1e0, filesz: 4 }))), 0, { filesz: 6 * 56 }), patches: [...s.patches!, [0x1e3, [0]]] })), M, 'a second PT_INTERP'],
  ['PT_INTERP not NUL-terminated', b64((s) => withSegment(withSegments(s, { type: PT.INTERP, offset: 0x1e0, vaddr: 0x1e0, filesz: 4 }), 0, { filesz: 5 * 56 })), M, 'not NUL-terminated'],
  ['PT_INTERP of 1 byte', b64((s) => withSegment(withSegments(s, { type: PT.INTERP, offset: 0x1e0, vaddr: 0x1e0, filesz: 1 }), 0, { filesz: 5 * 56 })), M, 'interpreter path is 1 bytes'],
];

for (const [what, bytes, cls, fragment] of cases) {
  test(`refused: ${what}`, () => assertRefused(bytes(), cls, fragment, what));
}

test('every refusal also comes through planCanonical (dispatch by magic) with the same class', () => {
  for (const [what, bytes, cls] of cases) {
    assert.throws(() => planCanonical(bufferReader(bytes())), (err: unknown) => err instanceof cls, what);
  }
});

test('the refusal cases are each one change away from an accepted file (the bases are valid)', () => {
  for (const spec of [elf64Spec(), elf32Spec()]) assertTiles(planElf(bufferReader(buildElf(spec))), spec.size);
});

test(`${MAX_ELF_SEGMENTS} program headers (the cap) are checked quickly`, () => {
  // Many PT_LOADs and many unloaded segments: the pairwise checks stay bounded by the cap.
  const loads = 512;
  const segs: Seg[] = Array.from({ length: MAX_ELF_SEGMENTS }, (_, i) =>
    i < loads ? { type: PT.LOAD, offset: 0x10000 + i * 16, vaddr: 0x100000 + i * 16, filesz: 16 } : { type: 0x60000000, offset: 0x20000 + i * 16, vaddr: 0x900000 + i * 16, filesz: 16 },
  );
  const spec: Spec = { is64: true, le: true, size: 0x30000, segments: segs };
  const started = performance.now();
  const plan = planElf(bufferReader(buildElf(spec)));
  const ms = performance.now() - started;
  assertTiles(plan, spec.size);
  assert.is(plan.details.segments, MAX_ELF_SEGMENTS);
  assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`);
});

test.run();
