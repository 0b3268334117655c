// Reading the ELF header and the program header table: layout per class and byte order, and
// the checks that need nothing but the header itself. Every 64-bit value stays a bigint until
// it has been checked against the file, so no offset or size can wrap or lose precision.
import { MalformedBinaryError, UnsupportedBinaryError, hex } from '../errors.js';
import { readExact } from './read.js';
import type { ByteReader } from './types.js';

export const ET_REL = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const ET_CORE = 4;

export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;
export const PT_NOTE = 4;
export const PT_PHDR = 6;
export const PT_TLS = 7;
export const PT_GNU_EH_FRAME = 0x6474e550;
export const PT_GNU_STACK = 0x6474e551;
export const PT_GNU_RELRO = 0x6474e552;
export const PT_GNU_PROPERTY = 0x6474e553;

/** Program header types by value, for labels and messages. */
const PT_NAMES: ReadonlyMap<number, string> = new Map([
  [0, 'PT_NULL'],
  [1, 'PT_LOAD'],
  [2, 'PT_DYNAMIC'],
  [3, 'PT_INTERP'],
  [4, 'PT_NOTE'],
  [5, 'PT_SHLIB'],
  [6, 'PT_PHDR'],
  [7, 'PT_TLS'],
  [0x6474e550, 'PT_GNU_EH_FRAME'],
  [0x6474e551, 'PT_GNU_STACK'],
  [0x6474e552, 'PT_GNU_RELRO'],
  [0x6474e553, 'PT_GNU_PROPERTY'],
  [0x6474e554, 'PT_GNU_SFRAME'],
]);

/** e_machine values worth a name in `details`; others are printed in hex. */
const MACHINES: ReadonlyMap<number, string> = new Map([
  [3, 'i386'],
  [8, 'mips'],
  [20, 'ppc'],
  [21, 'ppc64'],
  [22, 's390'],
  [40, 'arm'],
  [62, 'x86-64'],
  [183, 'aarch64'],
  [243, 'riscv'],
  [247, 'bpf'],
  [258, 'loongarch'],
]);

/**
 * More program headers than any linker writes for an executable or shared object (GNU ld
 * writes about 15). The consistency checks compare segments pairwise, so the cap keeps them
 * cheap whatever e_phnum says.
 */
export const MAX_ELF_SEGMENTS = 1024;

export const PN_XNUM = 0xffff;

/** A byte range of the file. */
export interface FileRange {
  readonly start: number;
  readonly end: number;
}

export interface ElfHeader {
  readonly is64: boolean;
  readonly littleEndian: boolean;
  readonly type: number;
  readonly machine: number;
  readonly ehsize: number;
  readonly phoff: number;
  readonly phentsize: number;
  readonly phnum: number;
  /** e_shoff and e_shentsize..e_shstrndx: the section-header fields v1 zeroes. */
  readonly sectionFields: readonly (FileRange & { readonly name: string })[];
}

export interface ProgramHeader {
  readonly index: number;
  readonly type: number;
  readonly flags: number;
  readonly offset: bigint;
  readonly vaddr: bigint;
  readonly filesz: bigint;
  readonly memsz: bigint;
  readonly align: bigint;
  /** [p_offset, p_offset + p_filesz) as numbers, checked against the file; empty when p_filesz is 0. */
  readonly file: FileRange;
  /** e.g. `segment 2 (PT_LOAD, R-X)`. */
  readonly label: string;
}

const EI_NIDENT = 16;
const EV_CURRENT = 1;

/** Sizes and field offsets that differ between ELFCLASS32 and ELFCLASS64. */
const LAYOUT = {
  32: { ehsize: 52, phentsize: 32, phoff: 28, shoff: 32, shoffSize: 4, flags: 36 },
  64: { ehsize: 64, phentsize: 56, phoff: 32, shoff: 40, shoffSize: 8, flags: 48 },
} as const;

export function typeName(type: number): string {
  return PT_NAMES.get(type) ?? `PT_${hex(type)}`;
}

export function machineName(machine: number): string {
  return MACHINES.get(machine) ?? hex(machine);
}

/** Read and check the ELF header; refuse ET_REL, ET_CORE and other non-loadable types. */
export function readElfHeader(reader: ByteReader): ElfHeader {
  const size = reader.size;
  if (size < EI_NIDENT) {
    throw new MalformedBinaryError('elf', `ELF identification truncated: the file is ${size} bytes, e_ident takes ${EI_NIDENT}`, 0);
  }
  const ident = readExact(reader, 'elf', 'ELF identification', 0, EI_NIDENT);
  const elfClass = ident[4]!;
  const data = ident[5]!;
  if (elfClass !== 1 && elfClass !== 2) {
    throw new MalformedBinaryError('elf', `bad EI_CLASS ${elfClass} at 0x4 (1 = ELFCLASS32, 2 = ELFCLASS64)`, 4);
  }
  if (data !== 1 && data !== 2) {
    throw new MalformedBinaryError('elf', `bad EI_DATA ${data} at 0x5 (1 = little-endian, 2 = big-endian)`, 5);
  }
  if (ident[6] !== EV_CURRENT) {
    throw new MalformedBinaryError('elf', `bad EI_VERSION ${ident[6]} at 0x6 (only 1, EV_CURRENT, exists)`, 6);
  }
  const is64 = elfClass === 2;
  const layout = is64 ? LAYOUT[64] : LAYOUT[32];
  if (size < layout.ehsize) {
    throw new MalformedBinaryError('elf', `ELF header truncated: the file is ${size} bytes, an ELF${is64 ? 64 : 32} header takes ${layout.ehsize}`, 0);
  }
  const bytes = readExact(reader, 'elf', 'ELF header', 0, layout.ehsize);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const le = data === 1;
  const u16 = (at: number) => view.getUint16(at, le);

  const type = u16(16);
  checkType(type);
  const version = view.getUint32(20, le);
  if (version !== EV_CURRENT) {
    throw new MalformedBinaryError('elf', `bad e_version ${version} at 0x14 (only 1, EV_CURRENT, exists)`, 20);
  }
  const f = layout.flags; // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx follow e_flags
  const ehsize = u16(f + 4);
  const phentsize = u16(f + 6);
  const phnum = u16(f + 8);
  if (ehsize !== layout.ehsize) {
    throw new MalformedBinaryError('elf', `e_ehsize is ${ehsize}, an ELF${is64 ? 64 : 32} header is ${layout.ehsize} bytes`, f + 4);
  }
  if (phentsize !== layout.phentsize) {
    throw new MalformedBinaryError('elf', `e_phentsize is ${phentsize}, an ELF${is64 ? 64 : 32} program header is ${layout.phentsize} bytes`, f + 6);
  }
  if (phnum === PN_XNUM) {
    throw new MalformedBinaryError('elf', `e_phnum is 0xffff (PN_XNUM: the real count would be in section header 0, which no loader reads)`, f + 8);
  }
  if (phnum === 0) {
    throw new MalformedBinaryError('elf', 'e_phnum is 0: no program headers, nothing to load', f + 8);
  }
  if (phnum > MAX_ELF_SEGMENTS) {
    throw new UnsupportedBinaryError('elf', `e_phnum is ${phnum}: profile v1 measures files with at most ${MAX_ELF_SEGMENTS} program headers`);
  }
  const phoffRaw = is64 ? view.getBigUint64(layout.phoff, le) : BigInt(view.getUint32(layout.phoff, le));
  const tableSize = BigInt(phnum * phentsize);
  if (phoffRaw + tableSize > BigInt(size)) {
    throw new MalformedBinaryError(
      'elf',
      `program header table extends past end of file (offset ${hex64(phoffRaw)} + size ${hex64(tableSize)} > file size ${hex(size)})`,
      layout.phoff,
    );
  }
  const phoff = Number(phoffRaw);
  // Zeroing e_shoff & co. must not change a program header, so the table may not overlap the header.
  if (phoff < ehsize) {
    throw new MalformedBinaryError('elf', `program header table at ${hex(phoff)} overlaps the ELF header (0x0..${hex(ehsize)})`, layout.phoff);
  }
  return {
    is64,
    littleEndian: le,
    type,
    machine: u16(18),
    ehsize,
    phoff,
    phentsize,
    phnum,
    sectionFields: [
      { start: layout.shoff, end: layout.shoff + layout.shoffSize, name: 'e_shoff' },
      { start: f + 10, end: f + 16, name: 'e_shentsize, e_shnum, e_shstrndx' },
    ],
  };
}

function checkType(type: number): void {
  if (type === ET_EXEC || type === ET_DYN) return;
  if (type === ET_REL) {
    throw new UnsupportedBinaryError('elf', 'relocatable object (ET_REL, e.g. a .o or an eBPF object): profile v1 measures executables and shared objects only');
  }
  if (type === ET_CORE) {
    throw new UnsupportedBinaryError('elf', 'core dump (ET_CORE): profile v1 measures executables and shared objects only');
  }
  throw new UnsupportedBinaryError('elf', `ELF type ${hex(type)} (e_type): profile v1 measures executables (ET_EXEC) and shared objects (ET_DYN) only`);
}

/** Read every program header; check that each segment's file bytes lie inside the file. */
export function readProgramHeaders(reader: ByteReader, header: ElfHeader): ProgramHeader[] {
  const { is64, littleEndian: le, phoff, phentsize, phnum } = header;
  const table = readExact(reader, 'elf', 'program header table', phoff, phnum * phentsize);
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const size = BigInt(reader.size);
  const out: ProgramHeader[] = [];
  for (let index = 0; index < phnum; index++) {
    const at = index * phentsize;
    const u32 = (rel: number) => view.getUint32(at + rel, le);
    const word = (rel: number) => (is64 ? view.getBigUint64(at + rel, le) : BigInt(view.getUint32(at + rel, le)));
    const type = u32(0);
    const ph = is64
      ? { flags: u32(4), offset: word(8), vaddr: word(16), filesz: word(32), memsz: word(40), align: word(48) }
      : { offset: word(4), vaddr: word(8), filesz: word(16), memsz: word(20), flags: u32(24), align: word(28) };
    const label = `segment ${index} (${typeName(type)}, ${flagString(ph.flags)})`;
    let file: FileRange = { start: 0, end: 0 };
    // A segment with no file bytes reads nothing, wherever p_offset points.
    if (ph.filesz > 0n) {
      if (ph.offset + ph.filesz > size) {
        throw new MalformedBinaryError(
          'elf',
          `${label} extends past end of file (offset ${hex64(ph.offset)} + size ${hex64(ph.filesz)} > file size ${hex(reader.size)})`,
          phoff + at,
        );
      }
      file = { start: Number(ph.offset), end: Number(ph.offset + ph.filesz) };
    }
    out.push({ index, type, ...ph, file, label });
  }
  return out;
}

/** p_flags as readelf prints them: R, W, X or '-'. */
function flagString(flags: number): string {
  return `${flags & 4 ? 'R' : '-'}${flags & 2 ? 'W' : '-'}${flags & 1 ? 'X' : '-'}`;
}

export function hex64(value: bigint): string {
  return `0x${value.toString(16)}`;
}
