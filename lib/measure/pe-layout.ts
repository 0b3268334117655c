// Parse and validate the file layout of a PE/COFF image: headers, section table, the data
// after the sections (COFF symbol table, padding, certificate table) and the debug directory.
// Both measurement profiles (pe.ts) build on this one reading, so a file either has exactly
// one layout or is refused here. Nothing is guessed: a section that overlaps another or the
// headers, a certificate table that does not run to the end of the file or is not exactly
// filled by its entries, data appended after it, a debug directory outside every section:
// each is a MalformedBinaryError naming the structure, the offsets and the sizes.
import { MalformedBinaryError, UnsupportedBinaryError, hex } from '../errors.js';
import { checkRange, readExact } from './read.js';
import type { ByteReader } from './types.js';

const DOS_HEADER_BYTES = 64;
const E_LFANEW_OFFSET = 0x3c;
const PE_SIGNATURE_BYTES = 4;
const COFF_HEADER_BYTES = 20;
const SECTION_HEADER_BYTES = 40;
const DATA_DIRECTORY_BYTES = 8;
const DEBUG_ENTRY_BYTES = 28;
const WIN_CERTIFICATE_HEADER_BYTES = 8;

/** The PE/COFF specification's (and the Windows loader's) limit on NumberOfSections. */
export const MAX_PE_SECTIONS = 96;
/** The specification defines 16 data directories; more cannot be interpreted. */
const MAX_DATA_DIRECTORIES = 16;
/** Real images carry one or two WIN_CERTIFICATEs (Debian's shim has two); more is refused. */
export const MAX_PE_CERTIFICATES = 64;
/** Real images have at most a dozen debug directory entries; each costs explanation ranges. */
export const MAX_PE_DEBUG_ENTRIES = 256;

const DATA_DIRECTORY_CERTIFICATE = 4;
const DATA_DIRECTORY_DEBUG = 6;

/** Optional header layout by magic: bytes before the data directories, and names. */
const OPTIONAL_HEADER = {
  0x10b: { name: 'PE32', fixedBytes: 96 },
  0x20b: { name: 'PE32+', fixedBytes: 112 },
} as const;
type Magic = keyof typeof OPTIONAL_HEADER;

// Offsets inside the optional header, the same for PE32 and PE32+.
const OPT_SIZE_OF_HEADERS = 60;
const OPT_CHECKSUM = 64;
const OPT_SUBSYSTEM = 68;

export interface PeRange {
  readonly start: number;
  readonly end: number;
}

export interface PeSection {
  /** Index in the section table (0-based). */
  readonly index: number;
  /** "section 2 (.text)", printable. */
  readonly label: string;
  readonly virtualAddress: number;
  /** [PointerToRawData, + SizeOfRawData); empty (and unchecked) when SizeOfRawData is 0. */
  readonly raw: PeRange;
}

export interface PeDebugEntry {
  readonly index: number;
  /** "debug directory entry 0 (CodeView)". */
  readonly label: string;
  /** The 28-byte IMAGE_DEBUG_DIRECTORY entry itself. */
  readonly entry: PeRange;
  /** [PointerToRawData, + SizeOfData), or undefined when SizeOfData is 0. */
  readonly data: PeRange | undefined;
}

export interface PeCertificateTable extends PeRange {
  readonly entries: number;
}

export interface PeLayout {
  readonly size: number;
  readonly eLfanew: number;
  readonly coffOffset: number;
  readonly machine: number;
  readonly magic: Magic;
  readonly subsystem: number;
  readonly sizeOfHeaders: number;
  /** File offset of the optional header's 4-byte CheckSum. */
  readonly checksumOffset: number;
  /** File offset of the certificate table's 8-byte data-directory entry; undefined when NumberOfRvaAndSizes <= 4. */
  readonly certificateEntryOffset: number | undefined;
  /** [e_lfanew, end of the section table): PE signature, COFF and optional headers, section table. */
  readonly peHeaders: PeRange;
  /** Sections in table order. */
  readonly sections: readonly PeSection[];
  /** Sections with raw data, sorted by PointerToRawData (they do not overlap). */
  readonly rawSections: readonly PeSection[];
  /** max(SizeOfHeaders, end of the last section's raw data): the installable prefix. */
  readonly imageEnd: number;
  /** COFF symbol table + string table right after the section data, if any. */
  readonly symbolTable: PeRange | undefined;
  /** Zero bytes (fewer than 8) after the section data or symbol table, to an 8-byte boundary. */
  readonly padding: PeRange;
  readonly certificateTable: PeCertificateTable | undefined;
  /** The debug directory (inside one section's raw data), if any. */
  readonly debugDirectory: PeRange | undefined;
  readonly debugEntries: readonly PeDebugEntry[];
}

const MACHINES: Readonly<Record<number, string>> = {
  0x14c: 'i386',
  0x8664: 'x86-64',
  0x1c0: 'arm',
  0x1c2: 'thumb',
  0x1c4: 'armv7',
  0xaa64: 'arm64',
  0x5032: 'riscv32',
  0x5064: 'riscv64',
  0x6232: 'loongarch32',
  0x6264: 'loongarch64',
  0xebc: 'efi-bytecode',
};

const SUBSYSTEMS: Readonly<Record<number, string>> = {
  1: 'native',
  2: 'windows-gui',
  3: 'windows-cui',
  5: 'os2-cui',
  7: 'posix-cui',
  9: 'windows-ce-gui',
  10: 'efi-application',
  11: 'efi-boot-service-driver',
  12: 'efi-runtime-driver',
  13: 'efi-rom',
  14: 'xbox',
  16: 'windows-boot-application',
};

const DEBUG_TYPES: Readonly<Record<number, string>> = {
  1: 'COFF',
  2: 'CodeView',
  3: 'FPO',
  4: 'Misc',
  5: 'Exception',
  6: 'Fixup',
  9: 'Borland',
  12: 'VC feature',
  13: 'POGO',
  14: 'ILTCG',
  16: 'Repro',
  17: 'embedded portable PDB',
  19: 'PDB checksum',
  20: 'extended DLL characteristics',
};

export const machineName = (machine: number): string => MACHINES[machine] ?? hex(machine);
export const subsystemName = (subsystem: number): string => `${SUBSYSTEMS[subsystem] ?? 'unknown'} (${subsystem})`;
export const magicName = (magic: Magic): string => OPTIONAL_HEADER[magic].name;

const fail = (message: string, offset?: number): never => {
  throw new MalformedBinaryError('pe', message, offset);
};

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const align8 = (n: number) => Math.ceil(n / 8) * 8;
const span = (r: PeRange) => `${hex(r.start)}-${hex(r.end)}`;

export function parsePeLayout(reader: ByteReader): PeLayout {
  const size = reader.size;
  if (size < DOS_HEADER_BYTES) {
    fail(`DOS header truncated: the file is ${size} bytes, the DOS header takes ${DOS_HEADER_BYTES}`, 0);
  }
  const dos = view(readExact(reader, 'pe', 'DOS header', 0, DOS_HEADER_BYTES));
  if (dos.getUint16(0, true) !== 0x5a4d) fail(`not a PE file: no "MZ" at offset 0`, 0);
  const eLfanew = dos.getUint32(E_LFANEW_OFFSET, true);
  // A PE header overlapping the DOS header is a known trick to make one file read two ways.
  if (eLfanew < DOS_HEADER_BYTES) {
    fail(`e_lfanew ${hex(eLfanew)} points inside the ${DOS_HEADER_BYTES}-byte DOS header`, E_LFANEW_OFFSET);
  }
  if (eLfanew > size || PE_SIGNATURE_BYTES + COFF_HEADER_BYTES > size - eLfanew) {
    fail(`e_lfanew ${hex(eLfanew)}: the PE signature and COFF header (${PE_SIGNATURE_BYTES + COFF_HEADER_BYTES} bytes) would extend past end of file (file size ${hex(size)})`, E_LFANEW_OFFSET);
  }
  const peHead = view(readExact(reader, 'pe', 'PE signature and COFF header', eLfanew, PE_SIGNATURE_BYTES + COFF_HEADER_BYTES));
  if (peHead.getUint32(0, true) !== 0x00004550) {
    const seen = [0, 1, 2, 3].map((i) => peHead.getUint8(i).toString(16).padStart(2, '0')).join(' ');
    fail(`MZ file without a PE signature: bytes at e_lfanew ${hex(eLfanew)} are ${seen}, expected 50 45 00 00 ("PE\\0\\0")`, eLfanew);
  }

  // COFF file header.
  const coffOffset = eLfanew + PE_SIGNATURE_BYTES;
  const machine = peHead.getUint16(4, true);
  const numberOfSections = peHead.getUint16(6, true);
  const pointerToSymbolTable = peHead.getUint32(12, true);
  const numberOfSymbols = peHead.getUint32(16, true);
  const sizeOfOptionalHeader = peHead.getUint16(20, true);
  if (numberOfSections > MAX_PE_SECTIONS) {
    fail(`COFF header: NumberOfSections is ${numberOfSections}, more than the ${MAX_PE_SECTIONS} the PE format allows`, coffOffset + 2);
  }

  // Optional header: the magic decides its layout; its size must agree with NumberOfRvaAndSizes.
  const optOffset = coffOffset + COFF_HEADER_BYTES;
  if (sizeOfOptionalHeader < 2) {
    fail(`COFF header: SizeOfOptionalHeader is ${sizeOfOptionalHeader}; an image needs an optional header`, coffOffset + 16);
  }
  const magic = view(readExact(reader, 'pe', 'optional header magic', optOffset, 2)).getUint16(0, true);
  if (magic === 0x107) throw new UnsupportedBinaryError('pe', `ROM image (optional header magic 0x107): only PE32 and PE32+ images are measured`);
  if (magic !== 0x10b && magic !== 0x20b) {
    fail(`optional header magic is ${hex(magic)}, expected 0x10b (PE32) or 0x20b (PE32+)`, optOffset);
  }
  const { name: magicText, fixedBytes } = OPTIONAL_HEADER[magic as Magic];
  if (sizeOfOptionalHeader < fixedBytes) {
    fail(`COFF header: SizeOfOptionalHeader is ${sizeOfOptionalHeader}, a ${magicText} optional header needs at least ${fixedBytes} bytes`, coffOffset + 16);
  }
  const opt = view(readExact(reader, 'pe', `${magicText} optional header`, optOffset, sizeOfOptionalHeader));
  const numberOfRvaAndSizes = opt.getUint32(fixedBytes - 4, true);
  if (numberOfRvaAndSizes > MAX_DATA_DIRECTORIES) {
    fail(`optional header: NumberOfRvaAndSizes is ${numberOfRvaAndSizes}, more than the ${MAX_DATA_DIRECTORIES} data directories defined`, optOffset + fixedBytes - 4);
  }
  const expectedOptional = fixedBytes + DATA_DIRECTORY_BYTES * numberOfRvaAndSizes;
  if (sizeOfOptionalHeader !== expectedOptional) {
    fail(`COFF header: SizeOfOptionalHeader is ${sizeOfOptionalHeader}, but a ${magicText} optional header with ${numberOfRvaAndSizes} data directories is ${expectedOptional} bytes`, coffOffset + 16);
  }
  const sizeOfHeaders = opt.getUint32(OPT_SIZE_OF_HEADERS, true);
  const subsystem = opt.getUint16(OPT_SUBSYSTEM, true);
  const directory = (index: number) => ({
    offset: optOffset + fixedBytes + DATA_DIRECTORY_BYTES * index,
    address: opt.getUint32(fixedBytes + DATA_DIRECTORY_BYTES * index, true),
    size: opt.getUint32(fixedBytes + DATA_DIRECTORY_BYTES * index + 4, true),
  });

  // Section table: right after the optional header, inside the headers and the file.
  const tableOffset = optOffset + sizeOfOptionalHeader;
  const tableEnd = tableOffset + SECTION_HEADER_BYTES * numberOfSections;
  if (sizeOfHeaders > size) {
    fail(`optional header: SizeOfHeaders ${hex(sizeOfHeaders)} is past end of file (file size ${hex(size)})`, optOffset + OPT_SIZE_OF_HEADERS);
  }
  if (tableEnd > sizeOfHeaders) {
    fail(`section table (${numberOfSections} entries at ${hex(tableOffset)}-${hex(tableEnd)}) extends past SizeOfHeaders ${hex(sizeOfHeaders)}`, tableOffset);
  }
  const table = view(readExact(reader, 'pe', 'section table', tableOffset, tableEnd - tableOffset));
  const sections: PeSection[] = [];
  for (let i = 0; i < numberOfSections; i++) {
    const at = i * SECTION_HEADER_BYTES;
    const label = `section ${i} (${sectionName(table, at)})`;
    const rawSize = table.getUint32(at + 16, true);
    const rawPointer = table.getUint32(at + 20, true);
    const raw = rawSize === 0 ? { start: 0, end: 0 } : { start: rawPointer, end: rawPointer + rawSize };
    if (rawSize !== 0) {
      checkRange('pe', `${label} raw data`, rawPointer, rawSize, size);
      if (rawPointer < sizeOfHeaders) {
        fail(`${label} raw data ${span(raw)} overlaps the headers (SizeOfHeaders ${hex(sizeOfHeaders)})`, tableOffset + at + 20);
      }
    }
    sections.push({ index: i, label, virtualAddress: table.getUint32(at + 12, true), raw });
  }
  const rawSections = sections.filter((s) => s.raw.end > s.raw.start).sort((a, b) => a.raw.start - b.raw.start);
  for (let i = 1; i < rawSections.length; i++) {
    const [a, b] = [rawSections[i - 1]!, rawSections[i]!];
    if (b.raw.start < a.raw.end) {
      fail(`${a.label} raw data ${span(a.raw)} and ${b.label} raw data ${span(b.raw)} overlap in the file`, b.raw.start);
    }
  }
  const imageEnd = Math.max(sizeOfHeaders, rawSections[rawSections.length - 1]?.raw.end ?? 0);
  const peHeaders = { start: eLfanew, end: tableEnd };

  const symbolTable = findSymbolTable(reader, pointerToSymbolTable, numberOfSymbols, imageEnd, coffOffset);
  const certEntry = numberOfRvaAndSizes > DATA_DIRECTORY_CERTIFICATE ? directory(DATA_DIRECTORY_CERTIFICATE) : undefined;
  const tail = checkTail(reader, symbolTable?.end ?? imageEnd, symbolTable !== undefined, certEntry);

  const debugDir = numberOfRvaAndSizes > DATA_DIRECTORY_DEBUG ? directory(DATA_DIRECTORY_DEBUG) : undefined;
  const debug = debugDir === undefined || debugDir.size === 0
    ? { directory: undefined, entries: [] }
    : readDebugDirectory(reader, debugDir, rawSections, sizeOfHeaders, peHeaders);

  return {
    size,
    eLfanew,
    coffOffset,
    machine,
    magic: magic as Magic,
    subsystem,
    sizeOfHeaders,
    checksumOffset: optOffset + OPT_CHECKSUM,
    certificateEntryOffset: certEntry?.offset,
    peHeaders,
    sections,
    rawSections,
    imageEnd,
    symbolTable,
    padding: tail.padding,
    certificateTable: tail.certificateTable,
    debugDirectory: debug.directory,
    debugEntries: debug.entries,
  };
}

/** A section's 8-byte name, printable ASCII only ("/4"-style long-name references stay as they are). */
function sectionName(table: DataView, at: number): string {
  let name = '';
  for (let i = 0; i < 8; i++) {
    const b = table.getUint8(at + i);
    if (b === 0) break;
    name += b > 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return name === '' ? 'unnamed' : name;
}

/**
 * The COFF symbol table (NumberOfSymbols 18-byte records) and the string table after it
 * (a 4-byte length that counts itself). GNU ld writes them right after the section data of
 * an image; they are never loaded. PointerToSymbolTable 0 means none (NumberOfSymbols is
 * then meaningless: the Linux EFI stub sets it to 1). Anywhere else than right after the
 * section data it would be unexplained data inside or after the image: refused.
 */
function findSymbolTable(reader: ByteReader, pointer: number, count: number, imageEnd: number, coffOffset: number): PeRange | undefined {
  if (pointer === 0) return undefined;
  const at = hex(pointer);
  if (pointer < imageEnd) fail(`COFF symbol table at ${at} lies inside the headers or section data (they end at ${hex(imageEnd)})`, coffOffset + 8);
  if (pointer > imageEnd) fail(`${pointer - imageEnd} bytes of unexplained data between the end of the section data (${hex(imageEnd)}) and the COFF symbol table at ${at}`, imageEnd);
  const stringTable = pointer + count * 18;
  const sizeBytes = readExact(reader, 'pe', `COFF string table size field (after ${count} symbols at ${at})`, stringTable, 4);
  const stringBytes = view(sizeBytes).getUint32(0, true);
  if (stringBytes < 4) fail(`COFF string table at ${hex(stringTable)} has size ${stringBytes}, less than its own 4-byte size field`, stringTable);
  checkRange('pe', `COFF string table`, stringTable, stringBytes, reader.size);
  return { start: pointer, end: stringTable + stringBytes };
}

/**
 * What may follow the section data (and symbol table): zero padding to the next 8-byte
 * boundary, then the certificate table running exactly to end of file. Anything else is
 * data no profile can explain (appended payloads, CVE-2013-3900 style stuffing): refused.
 */
function checkTail(
  reader: ByteReader,
  dataEnd: number,
  afterSymbols: boolean,
  certEntry: { offset: number; address: number; size: number } | undefined,
): { padding: PeRange; certificateTable: PeCertificateTable | undefined } {
  const size = reader.size;
  const what = afterSymbols ? 'the COFF symbol table' : 'the section data';
  // Size 0 means no table, whatever the address says (there is nothing to read or skip).
  const cert = certEntry !== undefined && certEntry.size !== 0 ? { start: certEntry.address, end: certEntry.address + certEntry.size } : undefined;
  let limit = size;
  if (cert !== undefined) {
    if (cert.start < dataEnd) {
      fail(`certificate table at ${hex(cert.start)} (its data-directory VirtualAddress is a file offset) overlaps the headers, section data or symbol table, which end at ${hex(dataEnd)}`, certEntry!.offset);
    }
    if (cert.start % 8 !== 0) fail(`certificate table at ${hex(cert.start)} is not 8-byte aligned`, certEntry!.offset);
    checkRange('pe', 'certificate table', cert.start, cert.end - cert.start, size);
    if (cert.end < size) {
      fail(`${size - cert.end} bytes of trailing data after the certificate table (${span(cert)}), which must run to end of file (${hex(size)})`, cert.end);
    }
    limit = cert.start;
  }
  const padding = { start: dataEnd, end: limit };
  if (limit > dataEnd) {
    if (limit !== align8(dataEnd)) {
      const next = cert !== undefined ? `the certificate table at ${hex(cert.start)}` : 'end of file';
      fail(`${limit - dataEnd} bytes of trailing data after ${what} (${hex(dataEnd)} to ${next}); only zero padding to the next 8-byte boundary may sit there`, dataEnd);
    }
    checkZero(reader, dataEnd, limit, `padding after ${what}`);
  }
  return { padding, certificateTable: cert === undefined ? undefined : { ...cert, entries: checkCertificates(reader, cert) } };
}

function checkZero(reader: ByteReader, start: number, end: number, what: string): void {
  const bytes = readExact(reader, 'pe', what, start, end - start);
  const at = bytes.findIndex((b) => b !== 0);
  if (at >= 0) fail(`${what} (${hex(start)}-${hex(end)}) is not zero: byte ${hex(bytes[at]!)} at ${hex(start + at)}`, start + at);
}

/**
 * WIN_CERTIFICATE entries (dwLength, wRevision, wCertificateType, then dwLength - 8 bytes),
 * each starting 8-aligned, zero padding between, exactly filling the table. A table with
 * room left over could carry data that no signature covers and no parser looks at.
 */
function checkCertificates(reader: ByteReader, table: PeRange): number {
  const tableText = `certificate table ${span(table)}`;
  let count = 0;
  for (let pos = table.start; pos < table.end; ) {
    if (count === MAX_PE_CERTIFICATES) {
      throw new UnsupportedBinaryError('pe', `${tableText} holds more than ${MAX_PE_CERTIFICATES} WIN_CERTIFICATE entries`);
    }
    const label = `${tableText}: entry ${count} at ${hex(pos)}`;
    if (table.end - pos < WIN_CERTIFICATE_HEADER_BYTES) {
      fail(`${label}: only ${table.end - pos} bytes left, less than a WIN_CERTIFICATE header; the entries do not fill the table`, pos);
    }
    const head = view(readExact(reader, 'pe', `${label} header`, pos, WIN_CERTIFICATE_HEADER_BYTES));
    const length = head.getUint32(0, true);
    const revision = head.getUint16(4, true);
    const type = head.getUint16(6, true);
    if (length < WIN_CERTIFICATE_HEADER_BYTES) {
      fail(`${label}: dwLength ${length} is less than its own 8-byte header; the entries do not fill the table`, pos);
    }
    if (length > table.end - pos) {
      fail(`${label}: dwLength ${hex(length)} extends past the end of the table at ${hex(table.end)}`, pos);
    }
    if (revision !== 0x100 && revision !== 0x200) fail(`${label}: wRevision is ${hex(revision)}, expected 0x100 or 0x200`, pos + 4);
    if (type !== 1 && type !== 2 && type !== 4) {
      fail(`${label}: wCertificateType is ${type}, expected 1 (X.509), 2 (PKCS#7 SignedData) or 4 (TS stack signed)`, pos + 6);
    }
    const end = pos + length;
    const next = align8(end);
    if (next > table.end) {
      fail(`${label}: its padding to 8 bytes (to ${hex(next)}) extends past the end of the table at ${hex(table.end)}`, end);
    }
    if (next > end) checkZero(reader, end, next, `${label} padding`);
    count++;
    pos = next;
  }
  return count;
}

/**
 * The debug directory: an RVA (mapped to the file through the one section whose raw data
 * holds it) and a size that is a whole number of 28-byte IMAGE_DEBUG_DIRECTORY entries. The
 * data an entry points to (PointerToRawData is a file offset) must lie in the file, inside a
 * section's raw data or in the headers, but not on the headers this parser reads.
 */
function readDebugDirectory(
  reader: ByteReader,
  dir: { offset: number; address: number; size: number },
  rawSections: readonly PeSection[],
  sizeOfHeaders: number,
  peHeaders: PeRange,
): { directory: PeRange; entries: PeDebugEntry[] } {
  const dirText = `debug directory (RVA ${hex(dir.address)}, ${hex(dir.size)} bytes)`;
  if (dir.size % DEBUG_ENTRY_BYTES !== 0) {
    fail(`${dirText}: size is not a multiple of the ${DEBUG_ENTRY_BYTES}-byte entry`, dir.offset);
  }
  const count = dir.size / DEBUG_ENTRY_BYTES;
  if (count > MAX_PE_DEBUG_ENTRIES) {
    throw new UnsupportedBinaryError('pe', `${dirText} has ${count} entries, more than the ${MAX_PE_DEBUG_ENTRIES} measured`);
  }
  const holders = rawSections.filter(
    (s) => dir.address >= s.virtualAddress && dir.address - s.virtualAddress + dir.size <= s.raw.end - s.raw.start,
  );
  if (holders.length === 0) fail(`${dirText} does not lie wholly inside any section's raw data`, dir.offset);
  if (holders.length > 1) fail(`${dirText} maps into both ${holders[0]!.label} and ${holders[1]!.label}: ambiguous`, dir.offset);
  const holder = holders[0]!;
  const start = holder.raw.start + (dir.address - holder.virtualAddress);
  const directory = { start, end: start + dir.size };
  const bytes = view(readExact(reader, 'pe', dirText, start, dir.size));
  const entries: PeDebugEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * DEBUG_ENTRY_BYTES;
    const type = bytes.getUint32(at + 12, true);
    const dataSize = bytes.getUint32(at + 16, true);
    const pointer = bytes.getUint32(at + 24, true);
    const label = `debug directory entry ${i} (${DEBUG_TYPES[type] ?? `type ${type}`})`;
    const entry = { start: start + at, end: start + at + DEBUG_ENTRY_BYTES };
    let data: PeRange | undefined;
    if (dataSize !== 0) {
      data = { start: pointer, end: pointer + dataSize };
      if (pointer === 0) fail(`${label}: ${dataSize} bytes of debug data at PointerToRawData 0`, entry.start + 24);
      checkRange('pe', `${label} data`, pointer, dataSize, reader.size);
      const inSection = rawSections.some((s) => data!.start >= s.raw.start && data!.end <= s.raw.end);
      if (!inSection && data.end > sizeOfHeaders) {
        fail(`${label}: debug data ${span(data)} lies neither inside one section's raw data nor in the headers (SizeOfHeaders ${hex(sizeOfHeaders)})`, entry.start + 24);
      }
      if (!inSection && (data.start < DOS_HEADER_BYTES || (data.start < peHeaders.end && data.end > peHeaders.start))) {
        fail(`${label}: debug data ${span(data)} overlaps the DOS header, PE headers or section table (${span(peHeaders)})`, entry.start + 24);
      }
    }
    entries.push({ index: i, label, entry, data });
  }
  return { directory, entries };
}
