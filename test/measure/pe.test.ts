// Unit tests of the PE/COFF canonicalizer (profiles v1 and authenticode) on images built
// byte by byte here: exact ranges and canonical bytes for PE32 and PE32+, the data-directory
// count pitfall, gaps, padding, and every refusal. Real signed files: pe-signed.test.ts.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MalformedBinaryError, UnsupportedBinaryError, VirtOffloadError } from '../../lib/errors.js';
import { bufferReader, measure, planCanonical, streamCanonical, type CanonicalPlan, type Profile } from '../../lib/measure/index.js';
import { planPe } from '../../lib/measure/pe.js';
import { assertTiles } from '../helpers/plans.js';

// ---- a small image builder -------------------------------------------------------------

interface SectionSpec {
  readonly name: string;
  readonly size: number;
  /** File offset; by default sections follow each other from SizeOfHeaders. */
  readonly at?: number;
}

interface Spec {
  readonly magic?: 0x10b | 0x20b;
  readonly numberOfRvaAndSizes?: number;
  readonly sizeOfHeaders?: number;
  readonly sections?: readonly SectionSpec[];
  /** Put a 2-entry debug directory (CodeView with 0x20 bytes of data, Repro without) in section 1. */
  readonly debug?: boolean;
  /** COFF symbol table right after the sections: this many symbols and these string bytes. */
  readonly symbols?: { readonly count: number; readonly strings: number };
  /** WIN_CERTIFICATE payload sizes (entries are padded to 8 with zeros). */
  readonly certificates?: readonly number[];
  readonly trailing?: readonly number[];
}

interface Built {
  readonly bytes: Uint8Array;
  readonly coff: number;
  readonly opt: number;
  readonly dataDirectories: number;
  readonly checksum: number;
  readonly sectionTable: number;
  readonly sections: readonly { start: number; end: number }[];
  readonly imageEnd: number;
  readonly symbolTable?: { start: number; end: number };
  readonly certificateTable?: { start: number; end: number };
  readonly debugDirectory?: number;
  readonly debugData?: { start: number; end: number };
}

const E_LFANEW = 0x80;
const DEBUG_DIR_IN_SECTION = 0x40;
const DEBUG_DATA_IN_SECTION = 0x100;

function buildPe(spec: Spec = {}): Built {
  const magic = spec.magic ?? 0x20b;
  const nrva = spec.numberOfRvaAndSizes ?? 16;
  const fixed = magic === 0x20b ? 112 : 96;
  const sizeOfOptionalHeader = fixed + 8 * nrva;
  const sectionSpecs = spec.sections ?? [{ name: '.text', size: 0x200 }, { name: '.rdata', size: 0x200 }];
  const sizeOfHeaders = spec.sizeOfHeaders ?? 0x200;
  const coff = E_LFANEW + 4;
  const opt = coff + 20;
  const sectionTable = opt + sizeOfOptionalHeader;

  const sections: { start: number; end: number }[] = [];
  let next = sizeOfHeaders;
  for (const s of sectionSpecs) {
    const start = s.at ?? next;
    sections.push({ start, end: start + s.size });
    next = Math.max(next, start + s.size);
  }
  const imageEnd = Math.max(sizeOfHeaders, ...sections.map((s) => s.end));
  let size = imageEnd;
  let symbolTable: Built['symbolTable'];
  if (spec.symbols) {
    symbolTable = { start: size, end: size + spec.symbols.count * 18 + 4 + spec.symbols.strings };
    size = symbolTable.end;
  }
  let certificateTable: Built['certificateTable'];
  if (spec.certificates) {
    size = Math.ceil(size / 8) * 8;
    const total = spec.certificates.reduce((sum, n) => sum + Math.ceil((8 + n) / 8) * 8, 0);
    certificateTable = { start: size, end: size + total };
    size += total;
  }
  const trailingAt = size;
  size += spec.trailing?.length ?? 0;

  const bytes = new Uint8Array(size);
  const dv = new DataView(bytes.buffer);
  bytes.set([0x4d, 0x5a]);
  for (let i = 0x40; i < E_LFANEW; i++) bytes[i] = 0xcc; // a DOS stub to keep
  dv.setUint32(0x3c, E_LFANEW, true);
  bytes.set([0x50, 0x45, 0, 0], E_LFANEW);
  dv.setUint16(coff, magic === 0x20b ? 0x8664 : 0x14c, true);
  dv.setUint16(coff + 2, sectionSpecs.length, true);
  dv.setUint32(coff + 4, 0x5f5e1000, true); // TimeDateStamp
  if (symbolTable) {
    dv.setUint32(coff + 8, symbolTable.start, true);
    dv.setUint32(coff + 12, spec.symbols!.count, true);
  }
  dv.setUint16(coff + 16, sizeOfOptionalHeader, true);
  dv.setUint16(coff + 18, 0x22, true);
  dv.setUint16(opt, magic, true);
  for (let i = 2; i < 60; i++) bytes[opt + i] = 0x10 + i; // linker versions, sizes, entry point…
  dv.setUint32(opt + 60, sizeOfHeaders, true);
  dv.setUint32(opt + 64, 0xc0ffee, true); // CheckSum
  dv.setUint16(opt + 68, 10, true); // EFI application
  dv.setUint32(opt + fixed - 4, nrva, true);
  const dataDirectories = opt + fixed;
  if (certificateTable && nrva > 4) {
    dv.setUint32(dataDirectories + 32, certificateTable.start, true);
    dv.setUint32(dataDirectories + 36, certificateTable.end - certificateTable.start, true);
  }

  let debugDirectory: number | undefined;
  let debugData: Built['debugData'];
  sectionSpecs.forEach((s, i) => {
    const at = sectionTable + 40 * i;
    bytes.set([...s.name].map((c) => c.charCodeAt(0)), at);
    dv.setUint32(at + 8, s.size, true); // VirtualSize
    dv.setUint32(at + 12, 0x1000 * (i + 1), true); // VirtualAddress
    dv.setUint32(at + 16, s.size, true);
    dv.setUint32(at + 20, s.size === 0 ? 0 : sections[i]!.start, true);
    for (let j = sections[i]!.start; j < sections[i]!.end; j++) bytes[j] = 0x21 + ((j * 7 + i) % 90);
  });
  if (spec.debug) {
    const holder = sections[1]!;
    debugDirectory = holder.start + DEBUG_DIR_IN_SECTION;
    debugData = { start: holder.start + DEBUG_DATA_IN_SECTION, end: holder.start + DEBUG_DATA_IN_SECTION + 0x20 };
    dv.setUint32(dataDirectories + 48, 0x2000 + DEBUG_DIR_IN_SECTION, true);
    dv.setUint32(dataDirectories + 52, 2 * 28, true);
    const e0 = debugDirectory;
    bytes.fill(0, e0, e0 + 2 * 28);
    dv.setUint32(e0 + 4, 0x5f5e1000, true);
    dv.setUint32(e0 + 12, 2, true); // CodeView
    dv.setUint32(e0 + 16, 0x20, true);
    dv.setUint32(e0 + 20, 0x2000 + DEBUG_DATA_IN_SECTION, true);
    dv.setUint32(e0 + 24, debugData.start, true);
    dv.setUint32(e0 + 28 + 12, 16, true); // Repro, no data
  }
  if (symbolTable) {
    bytes.fill(0x53, symbolTable.start, symbolTable.end);
    dv.setUint32(symbolTable.start + spec.symbols!.count * 18, 4 + spec.symbols!.strings, true);
  }
  if (certificateTable) {
    let at = certificateTable.start;
    for (const n of spec.certificates!) {
      dv.setUint32(at, 8 + n, true);
      dv.setUint16(at + 4, 0x200, true);
      dv.setUint16(at + 6, 2, true);
      bytes.fill(0x30, at + 8, at + 8 + n);
      at += Math.ceil((8 + n) / 8) * 8;
    }
  }
  if (spec.trailing) bytes.set(spec.trailing, trailingAt);
  return { bytes, coff, opt, dataDirectories, checksum: opt + 64, sectionTable, sections, imageEnd, symbolTable, certificateTable, debugDirectory, debugData };
}

// ---- helpers -------------------------------------------------------------------------

const plan = (bytes: Uint8Array, profile: Profile = 'v1') => planPe(bufferReader(bytes), profile);

function canonicalOf(p: CanonicalPlan, bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  const n = streamCanonical(p, bufferReader(bytes), new Uint8Array(4096), (chunk) => out.push(...chunk));
  assert.is(n, p.canonicalSize);
  return Uint8Array.from(out);
}


const shape = (p: CanonicalPlan) => p.ranges.map((r) => [r.start, r.end, r.disposition]);

function zeroed(bytes: Uint8Array, end: number, ...fields: [number, number][]): Uint8Array {
  const out = bytes.slice(0, end);
  for (const [at, n] of fields) out.fill(0, at, at + n);
  return out;
}

const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function assertRefused(bytes: Uint8Array, fragment: string, cls: typeof MalformedBinaryError | typeof UnsupportedBinaryError = MalformedBinaryError): void {
  for (const profile of ['v1', 'authenticode'] as const) {
    try {
      plan(bytes, profile);
    } catch (err) {
      assert.instance(err, cls, `${fragment}: ${String(err)}`);
      assert.ok((err as Error).message.includes(fragment), `message "${(err as Error).message}" should contain "${fragment}"`);
      continue;
    }
    assert.unreachable(`expected ${cls.name} containing "${fragment}" (${profile})`);
  }
}

function poke(b: Built, edit: (dv: DataView, b: Built) => void): Uint8Array {
  const bytes = b.bytes.slice();
  edit(new DataView(bytes.buffer), b);
  return bytes;
}

// ---- what is measured -----------------------------------------------------------------

test('PE32+ with debug directory, symbol table and certificate: v1 ranges and canonical bytes', async () => {
  const b = buildPe({ debug: true, symbols: { count: 3, strings: 5 }, certificates: [0x35] });
  const p = plan(b.bytes);
  assertTiles(p, b.bytes.length);
  const dd = b.dataDirectories;
  const [text, rdata] = b.sections;
  assert.equal(shape(p), [
    [0, b.coff + 4, 'kept'],
    [b.coff + 4, b.coff + 8, 'zeroed'], // TimeDateStamp
    [b.coff + 8, b.coff + 16, 'zeroed'], // PointerToSymbolTable, NumberOfSymbols
    [b.coff + 16, b.checksum, 'kept'],
    [b.checksum, b.checksum + 4, 'zeroed'],
    [b.checksum + 4, dd + 32, 'kept'],
    [dd + 32, dd + 40, 'zeroed'], // certificate table entry
    [dd + 40, 0x200, 'kept'],
    [0x200, 0x400, 'kept'], // .text
    [0x400, b.debugDirectory!, 'kept'],
    [b.debugDirectory!, b.debugDirectory! + 28, 'zeroed'],
    [b.debugDirectory! + 28, b.debugDirectory! + 56, 'zeroed'],
    [b.debugDirectory! + 56, b.debugData!.start, 'kept'],
    [b.debugData!.start, b.debugData!.end, 'zeroed'],
    [b.debugData!.end, 0x600, 'kept'],
    [0x600, b.bytes.length, 'dropped'],
  ]);
  assert.ok(p.ranges.at(-1)!.reason.includes('symbol'), p.ranges.at(-1)!.reason);
  assert.ok(p.ranges.at(-1)!.reason.includes('certificate table'), p.ranges.at(-1)!.reason);
  const expected = zeroed(b.bytes, b.imageEnd, [b.coff + 4, 12], [b.checksum, 4], [dd + 32, 8], [b.debugDirectory!, 56], [b.debugData!.start, 0x20]);
  assert.equal(canonicalOf(p, b.bytes), expected);
  assert.equal(p.details, { machine: 'x86-64', magic: 'PE32+', subsystem: 'efi-application (10)', sections: 2, certificates: 1 });
  assert.is((await measure(bufferReader(b.bytes))).measurement, sha256(expected));
  assert.ok(text!.end === rdata!.start && rdata!.end === b.imageEnd);
});

test('PE32+ authenticode: headers without CheckSum and certificate entry, sections, symbol table and padding; no certificate', () => {
  const b = buildPe({ debug: true, symbols: { count: 3, strings: 5 }, certificates: [0x35] });
  const p = plan(b.bytes, 'authenticode');
  assertTiles(p, b.bytes.length);
  const dd = b.dataDirectories;
  const cert = b.certificateTable!;
  assert.equal(shape(p), [
    [0, b.checksum, 'kept'],
    [b.checksum, b.checksum + 4, 'dropped'],
    [b.checksum + 4, dd + 32, 'kept'],
    [dd + 32, dd + 40, 'dropped'],
    [dd + 40, 0x200, 'kept'],
    [0x200, 0x400, 'kept'],
    [0x400, 0x600, 'kept'],
    [0x600, cert.start, 'kept'], // symbol table + 1 byte of padding
    [cert.start, cert.end, 'dropped'],
  ]);
  assert.is(cert.start - b.symbolTable!.end, 1);
  const bytes = b.bytes;
  const expected = concat(bytes.subarray(0, b.checksum), bytes.subarray(b.checksum + 4, dd + 32), bytes.subarray(dd + 40, cert.start));
  assert.equal(canonicalOf(p, bytes), expected);
  // Debug data is hashed by Authenticode: changing it changes the digest, not v1.
  const changed = poke(b, (dv, x) => dv.setUint8(x.debugData!.start, 0x99));
  assert.not.equal(canonicalOf(plan(changed, 'authenticode'), changed), expected);
  assert.equal(canonicalOf(plan(changed), changed), canonicalOf(plan(bytes), bytes));
});

test('PE32 (magic 0x10b): data directories at optional header + 96; ranges and both profiles', () => {
  const b = buildPe({ magic: 0x10b, certificates: [8] });
  const dd = b.dataDirectories;
  assert.is(dd, b.opt + 96);
  const v1 = plan(b.bytes);
  assertTiles(v1, b.bytes.length);
  assert.equal(shape(v1), [
    [0, b.coff + 4, 'kept'],
    [b.coff + 4, b.coff + 8, 'zeroed'],
    [b.coff + 8, b.checksum, 'kept'],
    [b.checksum, b.checksum + 4, 'zeroed'],
    [b.checksum + 4, dd + 32, 'kept'],
    [dd + 32, dd + 40, 'zeroed'],
    [dd + 40, 0x200, 'kept'],
    [0x200, 0x400, 'kept'],
    [0x400, 0x600, 'kept'],
    [0x600, 0x610, 'dropped'],
  ]);
  assert.equal(v1.details, { machine: 'i386', magic: 'PE32', subsystem: 'efi-application (10)', sections: 2, certificates: 1 });
  assert.equal(canonicalOf(v1, b.bytes), zeroed(b.bytes, 0x600, [b.coff + 4, 4], [b.checksum, 4], [dd + 32, 8]));
  const auth = plan(b.bytes, 'authenticode');
  assert.equal(canonicalOf(auth, b.bytes), concat(b.bytes.subarray(0, b.checksum), b.bytes.subarray(b.checksum + 4, dd + 32), b.bytes.subarray(dd + 40, 0x600)));
});

test('signing, re-signing, CheckSum and TimeDateStamp leave v1 unchanged; code changes do not', () => {
  const unsigned = buildPe({ debug: true }).bytes;
  const signed = buildPe({ debug: true, certificates: [100] }).bytes;
  const resigned = buildPe({ debug: true, certificates: [300, 40] }).bytes;
  const base = canonicalOf(plan(unsigned), unsigned);
  for (const other of [signed, resigned]) assert.equal(canonicalOf(plan(other), other), base);
  const auth = canonicalOf(plan(unsigned, 'authenticode'), unsigned);
  for (const other of [signed, resigned]) assert.equal(canonicalOf(plan(other, 'authenticode'), other), auth);

  const b = buildPe({ debug: true });
  const checksum = poke(b, (dv, x) => dv.setUint32(x.checksum, 0x1234567, true));
  const stamp = poke(b, (dv, x) => dv.setUint32(x.coff + 4, 1, true));
  const code = poke(b, (dv, x) => dv.setUint8(x.sections[0]!.start + 5, 0x90));
  assert.equal(canonicalOf(plan(checksum), checksum), base);
  assert.equal(canonicalOf(plan(checksum, 'authenticode'), checksum), auth);
  assert.equal(canonicalOf(plan(stamp), stamp), base);
  assert.not.equal(canonicalOf(plan(stamp, 'authenticode'), stamp), auth);
  assert.not.equal(canonicalOf(plan(code), code), base);
  assert.not.equal(canonicalOf(plan(code, 'authenticode'), code), auth);
});

test('NumberOfRvaAndSizes < 5: no certificate entry is skipped; the section table where it would be is kept', () => {
  for (const nrva of [0, 3, 4]) {
    const b = buildPe({ numberOfRvaAndSizes: nrva });
    const dd = b.dataDirectories;
    assert.ok(dd + 40 > b.sectionTable, 'entry 4 would lie in the section table');
    const v1 = plan(b.bytes);
    assert.equal(canonicalOf(v1, b.bytes), zeroed(b.bytes, 0x600, [b.coff + 4, 4], [b.checksum, 4]), `v1, ${nrva} directories`);
    const auth = plan(b.bytes, 'authenticode');
    assert.equal(canonicalOf(auth, b.bytes), concat(b.bytes.subarray(0, b.checksum), b.bytes.subarray(b.checksum + 4)), `authenticode, ${nrva} directories`);
  }
});

test('NumberOfRvaAndSizes 6: the debug directory entry is not read (the section table is there)', () => {
  const b = buildPe({ numberOfRvaAndSizes: 6 });
  // Section 0's header occupies where directory 6 would be; its VirtualAddress/size fields
  // would map to a "debug directory". Nothing must be zeroed beyond the fixed fields.
  assert.ok(b.dataDirectories + 48 >= b.sectionTable);
  const v1 = plan(b.bytes);
  assert.equal(canonicalOf(v1, b.bytes), zeroed(b.bytes, 0x600, [b.coff + 4, 4], [b.checksum, 4], [b.dataDirectories + 32, 8]));
});

test('bytes that are neither headers nor section data: zeroed in v1, not hashed by authenticode', () => {
  const b = buildPe({ sections: [{ name: '.text', size: 0x200, at: 0x400 }, { name: '.data', size: 0x100, at: 0x700 }] });
  const bytes = poke(b, (dv) => {
    for (let i = 0x200; i < 0x400; i++) dv.setUint8(i, 0xee);
    for (let i = 0x600; i < 0x700; i++) dv.setUint8(i, 0xdd);
  });
  const v1 = plan(bytes);
  assertTiles(v1, bytes.length);
  assert.equal(shape(v1).slice(-4), [[0x200, 0x400, 'zeroed'], [0x400, 0x600, 'kept'], [0x600, 0x700, 'zeroed'], [0x700, 0x800, 'kept']]);
  assert.equal(canonicalOf(v1, bytes), zeroed(bytes, 0x800, [b.coff + 4, 4], [b.checksum, 4], [b.dataDirectories + 32, 8], [0x200, 0x200], [0x600, 0x100]));
  const auth = plan(bytes, 'authenticode');
  assert.equal(shape(auth).slice(-4), [[0x200, 0x400, 'dropped'], [0x400, 0x600, 'kept'], [0x600, 0x700, 'dropped'], [0x700, 0x800, 'kept']]);
});

test('sections out of table order are hashed by authenticode in file order; empty sections are ignored', () => {
  const b = buildPe({ sections: [{ name: '.data', size: 0x100, at: 0x400 }, { name: '.bss', size: 0 }, { name: '.text', size: 0x200, at: 0x200 }] });
  const auth = plan(b.bytes, 'authenticode');
  assert.equal(shape(auth).slice(-2), [[0x200, 0x400, 'kept'], [0x400, 0x500, 'kept']]);
  assert.ok(auth.ranges.at(-2)!.reason.includes('section 2 (.text)'), auth.ranges.at(-2)!.reason);
  assert.is(auth.details.sections, 3);
});

test('authenticode of an unsigned file pads it to 8 bytes with zeros, as a signer does', () => {
  const b = buildPe({ sections: [{ name: '.text', size: 0x200 }, { name: '.data', size: 0x1fd }] });
  assert.is(b.bytes.length % 8, 5);
  const auth = plan(b.bytes, 'authenticode');
  assertTiles(auth, b.bytes.length);
  assert.equal(shape(auth).slice(-2), [[0x400, b.bytes.length - 5, 'kept'], [b.bytes.length - 5, b.bytes.length, 'rewritten']]);
  const expected = concat(b.bytes.subarray(0, b.checksum), b.bytes.subarray(b.checksum + 4, b.dataDirectories + 32), b.bytes.subarray(b.dataDirectories + 40), new Uint8Array(3));
  assert.equal(canonicalOf(auth, b.bytes), expected);
  // The same file signed: the 3 padding bytes are real, the digest is the same.
  const signed = buildPe({ sections: [{ name: '.text', size: 0x200 }, { name: '.data', size: 0x1fd }], certificates: [16] });
  assert.equal(canonicalOf(plan(signed.bytes, 'authenticode'), signed.bytes), expected);
  assert.equal(canonicalOf(plan(signed.bytes), signed.bytes), canonicalOf(plan(b.bytes), b.bytes));
});

test('zero padding after the sections without a certificate table is accepted and dropped by v1', () => {
  const b = buildPe({ sections: [{ name: '.text', size: 0x1fd }], trailing: [0, 0, 0] });
  const v1 = plan(b.bytes);
  assert.equal(shape(v1).at(-1), [0x3fd, 0x400, 'dropped']);
  assert.equal(canonicalOf(plan(b.bytes, 'authenticode'), b.bytes).length, b.bytes.length - 12); // CheckSum, certificate entry
});

test('detection: an MZ file without a PE header is refused, not measured as raw', () => {
  const bytes = new Uint8Array(200);
  bytes.set([0x4d, 0x5a]);
  new DataView(bytes.buffer).setUint32(0x3c, 0x80, true);
  assert.throws(() => planCanonical(bufferReader(bytes)), (e: unknown) => e instanceof MalformedBinaryError && e.message.includes('without a PE signature'));
  assert.throws(() => planCanonical(bufferReader(bytes.subarray(0, 2))), (e: unknown) => e instanceof MalformedBinaryError && e.message.includes('DOS header truncated'));
});

// ---- refusals --------------------------------------------------------------------------

test('refuses truncated files and bad headers', () => {
  const b = buildPe();
  assertRefused(b.bytes.subarray(0, 40), 'DOS header truncated');
  assertRefused(b.bytes.subarray(0, 0x90), 'e_lfanew 0x80: the PE signature and COFF header');
  assertRefused(b.bytes.subarray(0, 0x100), 'optional header extends past end of file');
  assertRefused(b.bytes.subarray(0, 0x500), 'section 1 (.rdata) raw data extends past end of file');
  assertRefused(poke(b, (dv) => dv.setUint32(0x3c, 0x7fff_ffff, true)), 'e_lfanew 0x7fffffff');
  assertRefused(poke(b, (dv) => dv.setUint32(0x3c, 0x10, true)), 'points inside the 64-byte DOS header');
  assertRefused(poke(b, (dv) => dv.setUint8(E_LFANEW + 1, 0x46)), 'without a PE signature');
  assertRefused(poke(b, (dv, x) => dv.setUint16(x.opt, 0x20c, true)), 'optional header magic is 0x20c');
  assertRefused(poke(b, (dv, x) => dv.setUint16(x.opt, 0x107, true)), 'ROM image', UnsupportedBinaryError);
  assertRefused(poke(b, (dv, x) => dv.setUint16(x.coff + 2, 97, true)), 'NumberOfSections is 97');
  assertRefused(poke(b, (dv, x) => dv.setUint32(x.opt + 108, 17, true)), 'NumberOfRvaAndSizes is 17, more than the 16');
  assertRefused(poke(b, (dv, x) => dv.setUint32(x.opt + 108, 15, true)), 'with 15 data directories is 232 bytes');
  assertRefused(poke(b, (dv, x) => dv.setUint16(x.coff + 16, 0x60, true)), 'SizeOfOptionalHeader is 96, a PE32+ optional header needs at least 112');
  assertRefused(poke(b, (dv, x) => dv.setUint32(x.opt + 60, 0x100, true)), 'extends past SizeOfHeaders 0x100');
  assertRefused(poke(b, (dv, x) => dv.setUint32(x.opt + 60, 0x10000, true)), 'SizeOfHeaders 0x10000 is past end of file');
});

test('refuses sections past end of file, overlapping each other or the headers', () => {
  const b = buildPe();
  const t1 = b.sectionTable + 40;
  assertRefused(poke(b, (dv) => dv.setUint32(t1 + 16, 0x201, true)), 'section 1 (.rdata) raw data extends past end of file (offset 0x400 + size 0x201 > file size 0x600)');
  assertRefused(poke(b, (dv) => dv.setUint32(t1 + 20, 0xffff_fff0, true)), 'section 1 (.rdata) raw data extends past end of file');
  assertRefused(poke(b, (dv) => dv.setUint32(t1 + 20, 0x300, true)), 'section 0 (.text) raw data 0x200-0x400 and section 1 (.rdata) raw data 0x300-0x500 overlap');
  assertRefused(poke(b, (dv) => dv.setUint32(t1 + 20, 0x100, true)), 'section 1 (.rdata) raw data 0x100-0x300 overlaps the headers');
});

test('refuses a certificate table that is not at the end, misaligned, or not exactly filled', () => {
  const b = buildPe({ certificates: [0x35] });
  const cert = b.certificateTable!;
  const entry = b.dataDirectories + 32;
  const withTrailing = concat(b.bytes, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
  assertRefused(withTrailing, '8 bytes of trailing data after the certificate table');
  assertRefused(poke(b, (dv) => dv.setUint32(entry + 4, cert.end - cert.start - 8, true)), '8 bytes of trailing data after the certificate table');
  assertRefused(poke(b, (dv) => dv.setUint32(entry + 4, cert.end - cert.start + 8, true)), 'certificate table extends past end of file');
  assertRefused(poke(b, (dv) => dv.setUint32(entry, 0x500, true)), 'overlaps the headers, section data or symbol table');
  assertRefused(poke(b, (dv) => dv.setUint32(entry, 0, true)), 'certificate table at 0x0');
  // Table made larger than its entries (CVE-2013-3900 style): the entry length no longer fills it.
  const stuffed = concat(b.bytes, new Uint8Array(16));
  new DataView(stuffed.buffer).setUint32(entry + 4, cert.end - cert.start + 16, true);
  assertRefused(stuffed, 'dwLength 0 is less than its own 8-byte header; the entries do not fill the table');
  assertRefused(poke(b, (dv) => dv.setUint32(cert.start, 0x100, true)), 'dwLength 0x100 extends past the end of the table');
  assertRefused(poke(b, (dv) => dv.setUint32(cert.start, 0x30, true)), 'entry 1 at 0x630: dwLength 0x30303030 extends past the end of the table');
  assertRefused(poke(b, (dv) => dv.setUint32(cert.start, 0x3c, true)), 'entry 0 at 0x600 padding (0x63c-0x640) is not zero');
  assertRefused(poke(b, (dv) => dv.setUint8(cert.start + 8 + 0x35, 1)), 'padding (0x63d-0x640) is not zero');
  assertRefused(poke(b, (dv) => dv.setUint16(cert.start + 4, 0x300, true)), 'wRevision is 0x300');
  assertRefused(poke(b, (dv) => dv.setUint16(cert.start + 6, 3, true)), 'wCertificateType is 3');

  // Misaligned, and padding before the table.
  const odd = buildPe({ sections: [{ name: '.text', size: 0x200 }, { name: '.data', size: 0x1fd }], certificates: [16] });
  const oddEntry = odd.dataDirectories + 32;
  assertRefused(poke(odd, (dv) => dv.setUint8(0x5fe, 7)), 'padding after the section data (0x5fd-0x600) is not zero: byte 0x7 at 0x5fe');
  const shifted = concat(odd.bytes.subarray(0, 0x5fd), odd.bytes.subarray(0x600));
  new DataView(shifted.buffer).setUint32(oddEntry, 0x5fd, true);
  assertRefused(shifted, 'certificate table at 0x5fd is not 8-byte aligned');
  const far = concat(odd.bytes.subarray(0, 0x600), new Uint8Array(8), odd.bytes.subarray(0x600));
  new DataView(far.buffer).setUint32(oddEntry, 0x608, true);
  assertRefused(far, '11 bytes of trailing data after the section data (0x5fd to the certificate table at 0x608)');
});

test('refuses trailing data, and symbol tables that are not right after the sections', () => {
  assertRefused(buildPe({ trailing: [1] }).bytes, '1 bytes of trailing data after the section data (0x600 to end of file)');
  assertRefused(buildPe({ trailing: new Array(8).fill(0) }).bytes, '8 bytes of trailing data after the section data');
  assertRefused(buildPe({ sections: [{ name: '.text', size: 0x1fd }], trailing: [0, 1, 0] }).bytes, 'padding after the section data (0x3fd-0x400) is not zero');
  const s = buildPe({ symbols: { count: 2, strings: 3 }, trailing: [9] });
  assertRefused(s.bytes, 'trailing data after the COFF symbol table');
  const sym = buildPe({ symbols: { count: 2, strings: 3 } });
  assertRefused(poke(sym, (dv, x) => dv.setUint32(x.coff + 8, 0x500, true)), 'COFF symbol table at 0x500 lies inside the headers or section data');
  assertRefused(poke(sym, (dv, x) => dv.setUint32(x.coff + 8, 0x608, true)), 'unexplained data between the end of the section data (0x600) and the COFF symbol table at 0x608');
  assertRefused(poke(sym, (dv, x) => dv.setUint32(x.coff + 12, 1000, true)), 'COFF string table size field');
  assertRefused(poke(sym, (dv) => dv.setUint32(0x600 + 36, 3, true)), 'has size 3, less than its own 4-byte size field');
  assertRefused(poke(sym, (dv) => dv.setUint32(0x600 + 36, 100, true)), 'COFF string table extends past end of file');
  // PointerToSymbolTable 0 with NumberOfSymbols set (as the Linux EFI stub writes) is no table.
  const stub = poke(buildPe(), (dv, x) => dv.setUint32(x.coff + 12, 1, true));
  assert.is(plan(stub).canonicalSize, 0x600);
});

test('refuses a debug directory outside the sections and debug data outside the file or sections', () => {
  const b = buildPe({ debug: true });
  const dir = b.dataDirectories + 48;
  const e0 = b.debugDirectory!;
  assertRefused(poke(b, (dv) => dv.setUint32(dir, 0x100, true)), 'debug directory (RVA 0x100, 0x38 bytes) does not lie wholly inside any section');
  assertRefused(poke(b, (dv) => dv.setUint32(dir, 0x2200 - 28, true)), 'does not lie wholly inside any section');
  assertRefused(poke(b, (dv) => dv.setUint32(dir + 4, 50, true)), 'size is not a multiple of the 28-byte entry');
  assertRefused(poke(b, (dv) => dv.setUint32(dir + 4, 28 * 300, true)), 'has 300 entries, more than the 256', UnsupportedBinaryError);
  assertRefused(poke(b, (dv) => dv.setUint32(e0 + 24, 0x5f0, true)), 'debug directory entry 0 (CodeView) data extends past end of file');
  assertRefused(poke(b, (dv) => dv.setUint32(e0 + 24, 0x3f0, true)), 'lies neither inside one section\'s raw data nor in the headers');
  assertRefused(poke(b, (dv) => dv.setUint32(e0 + 24, 0, true)), 'at PointerToRawData 0');
  assertRefused(poke(b, (dv, x) => dv.setUint32(e0 + 24, x.sectionTable, true)), 'overlaps the DOS header, PE headers or section table');
  // Debug data in the slack after the section table is accepted and zeroed.
  const slack = poke(b, (dv) => dv.setUint32(e0 + 24, 0x1e0, true));
  assert.equal(canonicalOf(plan(slack), slack).subarray(0x1e0, 0x200), new Uint8Array(0x20));
  // An empty directory (size 0) is no directory, whatever its RVA.
  const empty = poke(b, (dv) => dv.setUint32(dir + 4, 0, true));
  assert.is(canonicalOf(plan(empty), empty)[e0 + 12], 2);
});

// ---- robustness ------------------------------------------------------------------------

test('every truncation and single-byte change of the headers: a typed refusal or a plan that tiles', () => {
  const b = buildPe({ debug: true, symbols: { count: 2, strings: 3 }, certificates: [0x35] });
  const variants: Uint8Array[] = [];
  for (let n = 0; n < b.bytes.length; n += 7) variants.push(b.bytes.subarray(0, n));
  for (let at = 0; at < 0x200; at++) {
    for (const v of [0x00, 0xff, 0x80]) variants.push(poke(b, (dv) => dv.setUint8(at, v)));
  }
  let planned = 0;
  for (const bytes of variants) {
    for (const profile of ['v1', 'authenticode'] as const) {
      let p: CanonicalPlan;
      try {
        p = planCanonical(bufferReader(bytes), profile);
      } catch (err) {
        assert.ok(err instanceof VirtOffloadError && (err.code === 'EMALFORMED' || err.code === 'EUNSUPPORTED'), String(err));
        continue;
      }
      planned++;
      assertTiles(p, bytes.length);
      assert.is(canonicalOf(p, bytes).length, p.canonicalSize);
    }
  }
  assert.ok(planned > 100, `some variants are still valid PEs (${planned})`);
});

test.run();
