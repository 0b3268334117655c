// PE/COFF measurement, two profiles over one validated layout (pe-layout.ts).
//
// Profile `v1` measures the INSTALLABLE image: the file prefix up to the end of the last
// section's raw data, in its original layout, with the fields that signing, checksumming and
// linking at another time rewrite set to zero (CheckSum, COFF TimeDateStamp, the certificate
// table's data-directory entry, PointerToSymbolTable/NumberOfSymbols when a symbol table is
// left out), the debug directory's entries and the debug data they point to zeroed, bytes
// between the headers and sections zeroed, and the COFF symbol table, padding and
// certificate table dropped. The canonical bytes are themselves a valid unsigned PE: what
// the host installs and runs. This is stable across signing (osslsigncode sign, re-signing,
// remove-signature), checksum updates and timestamps. It is deliberately NOT stable across
// `strip`: on PE, strip shrinks the headers and moves every section's file offset
// (research/platform.md), and a layout-independent form would no longer be the file the
// host runs. Stripped and unstripped builds are two allowlist entries.
//
// Profile `authenticode` computes the standard Authenticode digest stream (Microsoft,
// "Windows Authenticode Portable Executable Signature Format"; checked against goblin's
// pe/authenticode.rs and Google's authenticode crate): the headers up to SizeOfHeaders
// without the CheckSum and the certificate-table data-directory entry, each section's raw
// data in PointerToRawData order, then the data after the sections up to the certificate
// table (symbol table, padding). Bytes that are in neither the headers nor a section are not
// hashed; the specification then continues at "SUM_OF_BYTES_HASHED" as a file offset, which
// equals the end of the last section only when there are no such gaps, so the trailing data
// is taken from the real end of the section data instead (osslsigncode, which hashes the
// file linearly, agrees whenever there are no gaps). An unsigned file whose size is not a
// multiple of 8 is hashed as if padded with zeros to 8 bytes, as a signer pads it before
// appending the certificate table (goblin and osslsigncode do the same), so the digest of an
// unsigned file equals the one its signature will carry.
import { hex } from '../errors.js';
import { PlanBuilder, sweepPrefixLayout, type LabeledRange } from './plan-builder.js';
import { magicName, machineName, parsePeLayout, subsystemName, type PeLayout } from './pe-layout.js';
import { readExact } from './read.js';
import type { ByteReader, CanonicalPlan, Profile } from './types.js';

export function planPe(reader: ByteReader, profile: Profile): CanonicalPlan {
  const layout = parsePeLayout(reader);
  const builder = new PlanBuilder('pe', profile, reader.size);
  if (profile === 'authenticode') planAuthenticode(builder, reader, layout);
  else planV1(builder, layout);
  builder.details.machine = machineName(layout.machine);
  builder.details.magic = magicName(layout.magic);
  builder.details.subsystem = subsystemName(layout.subsystem);
  builder.details.sections = layout.sections.length;
  builder.details.certificates = layout.certificateTable?.entries ?? 0;
  return builder.finish();
}

function planV1(builder: PlanBuilder, layout: PeLayout): void {
  const covered: LabeledRange[] = [{ start: 0, end: layout.sizeOfHeaders, label: 'headers (DOS, PE, optional header, section table)' }];
  for (const s of layout.rawSections) covered.push({ ...s.raw, label: `${s.label} raw data` });

  const field = (start: number, bytes: number, label: string): LabeledRange => ({ start, end: start + bytes, label });
  const zeroed: LabeledRange[] = [
    field(layout.checksumOffset, 4, 'optional header CheckSum (changes with signing)'),
    field(layout.coffOffset + 4, 4, 'COFF TimeDateStamp (link time)'),
  ];
  if (layout.certificateEntryOffset !== undefined) {
    zeroed.push(field(layout.certificateEntryOffset, 8, 'certificate table data-directory entry (signature, not code)'));
  }
  if (layout.symbolTable !== undefined) {
    zeroed.push(field(layout.coffOffset + 8, 8, 'COFF PointerToSymbolTable and NumberOfSymbols (symbol table left out)'));
  }
  for (const d of layout.debugEntries) {
    zeroed.push({ ...d.entry, label: `${d.label} (debug metadata)` });
    if (d.data !== undefined) zeroed.push({ ...d.data, label: `data of ${d.label} (debug data)` });
  }

  const tail: string[] = [];
  if (layout.symbolTable !== undefined) tail.push(`COFF symbol and string tables ${span(layout.symbolTable)}`);
  if (layout.padding.end > layout.padding.start) tail.push(`zero padding ${span(layout.padding)}`);
  if (layout.certificateTable !== undefined) {
    tail.push(`certificate table ${span(layout.certificateTable)} (${layout.certificateTable.entries} WIN_CERTIFICATE)`);
  }
  sweepPrefixLayout(builder, {
    prefixEnd: layout.imageEnd,
    covered,
    zeroed,
    gapReason: 'neither headers nor section raw data (never loaded)',
    tailReason: `after the image: ${tail.join(', ')} (not part of the installed image)`,
  });
}

function planAuthenticode(builder: PlanBuilder, reader: ByteReader, layout: PeLayout): void {
  const size = layout.size;
  const ops: { end: number; hashed: boolean; reason: string }[] = [];
  const hash = (end: number, reason: string) => ops.push({ end, hashed: true, reason });
  const skip = (end: number, reason: string) => ops.push({ end, hashed: false, reason });

  hash(layout.checksumOffset, 'headers up to the CheckSum');
  skip(layout.checksumOffset + 4, 'optional header CheckSum (not hashed by Authenticode)');
  if (layout.certificateEntryOffset !== undefined) {
    hash(layout.certificateEntryOffset, 'headers up to the certificate table data-directory entry');
    skip(layout.certificateEntryOffset + 8, 'certificate table data-directory entry (not hashed by Authenticode)');
  }
  hash(layout.sizeOfHeaders, 'headers up to SizeOfHeaders (with the section table)');
  for (const s of layout.rawSections) {
    skip(s.raw.start, 'neither headers nor section raw data (not hashed by Authenticode)');
    hash(s.raw.end, `${s.label} raw data`);
  }
  const trailing = [layout.symbolTable && 'COFF symbol and string tables', layout.padding.end > layout.padding.start && 'zero padding'];
  hash(layout.certificateTable?.start ?? size, `after the sections: ${trailing.filter(Boolean).join(' and ')} (hashed by Authenticode)`);
  if (layout.certificateTable !== undefined) {
    skip(size, `certificate table (${layout.certificateTable.entries} WIN_CERTIFICATE, not hashed by Authenticode)`);
  }

  // An unsigned file whose size is not a multiple of 8: its last `rest` bytes are re-emitted
  // (those of them that are hashed) followed by zeros, the padding a signer will add.
  const rest = layout.certificateTable === undefined ? size % 8 : 0;
  const tailStart = size - rest;
  for (const op of ops) {
    // Ends only grow (CheckSum < data directories < SizeOfHeaders <= sorted sections <= tail).
    if (op.hashed) builder.keep(Math.min(op.end, tailStart), op.reason);
    else builder.drop(Math.min(op.end, tailStart), op.reason);
  }
  if (rest > 0) {
    const last = readExact(reader, 'pe', 'last bytes of the file', tailStart, rest);
    const hashed: number[] = [];
    let start = 0;
    for (const op of ops) {
      for (let at = Math.max(start, tailStart); at < op.end; at++) if (op.hashed) hashed.push(last[at - tailStart]!);
      start = op.end;
    }
    const data = Uint8Array.from([...hashed, ...new Uint8Array(8 - rest)]);
    builder.rewrite(size, data, `last ${rest} bytes, then ${8 - rest} zero bytes: a signer pads the file to 8 bytes before adding the certificate table`);
  }
}

const span = (r: { start: number; end: number }) => `${hex(r.start)}-${hex(r.end)}`;
