// Profile v1 for ELF executables and shared objects (32/64-bit, either byte order).
//
// The loader reads an ELF file through its program headers only, so the canonical image is
// the file prefix that holds the ELF header, the program header table and every segment's
// file bytes, with three kinds of bytes zeroed inside it:
//   - e_shoff, e_shentsize, e_shnum, e_shstrndx: strip and objcopy rewrite them, and the
//     section headers they point to lie past the prefix and are dropped;
//   - bytes of the prefix that no header or segment covers (padding between segments);
//   - the NT_GNU_BUILD_ID descriptor: ld hashes the debug info into it, so keeping it would
//     make `gcc -g` and `gcc` builds of the same code differ.
// The result is still an executable (what gets installed and run). Before that, every check
// a loader or a file reader would disagree on is made here, so that no byte can mean one
// thing to the measurement and another to the kernel, ld.so or readelf.
import { MalformedBinaryError, hex } from '../errors.js';
import {
  ET_EXEC,
  PT_DYNAMIC,
  PT_GNU_EH_FRAME,
  PT_GNU_PROPERTY,
  PT_GNU_RELRO,
  PT_GNU_STACK,
  PT_INTERP,
  PT_LOAD,
  PT_NOTE,
  PT_PHDR,
  PT_TLS,
  hex64,
  machineName,
  readElfHeader,
  readProgramHeaders,
  typeName,
  type ElfHeader,
  type FileRange,
  type ProgramHeader,
} from './elf-headers.js';
import { parseNotes, type Note, type NoteBudget } from './elf-notes.js';
import { PlanBuilder, sweepPrefixLayout, type LabeledRange } from './plan-builder.js';
import { readExact } from './read.js';
import type { ByteReader, CanonicalPlan } from './types.js';

/** Types a file may carry at most once: loaders take the first or the last, readers differ. */
const SINGLETON_TYPES: readonly number[] = [PT_INTERP, PT_DYNAMIC, PT_PHDR, PT_TLS, PT_GNU_EH_FRAME, PT_GNU_STACK, PT_GNU_RELRO, PT_GNU_PROPERTY];

/** The kernel refuses an interpreter path shorter than 2 or longer than PATH_MAX bytes. */
const MAX_INTERP_BYTES = 4096;

export function planElf(reader: ByteReader): CanonicalPlan {
  const header = readElfHeader(reader);
  const segments = readProgramHeaders(reader, header);
  const loads = segments.filter((s) => s.type === PT_LOAD);
  checkLoads(header, loads);
  checkOtherSegments(header, segments, loads);
  const interpreter = readInterpreter(reader, segments);
  const buildId = findBuildId(reader, header, segments);

  const table: LabeledRange = { start: header.phoff, end: header.phoff + header.phnum * header.phentsize, label: 'program header table' };
  const zeroed: LabeledRange[] = header.sectionFields.map((f) => ({ ...f, label: `${f.name} (section headers are not loaded)` }));
  if (buildId !== undefined) zeroed.push({ ...buildId.note.desc, label: 'NT_GNU_BUILD_ID descriptor (ld hashes debug info into it)' });
  checkZeroedRanges(header, table, segments, buildId);

  const covered: LabeledRange[] = [{ start: 0, end: header.ehsize, label: 'ELF header' }, table];
  let prefixEnd = table.end;
  for (const s of segments) {
    if (s.file.end === s.file.start) continue;
    covered.push({ ...s.file, label: s.label });
    prefixEnd = Math.max(prefixEnd, s.file.end);
  }

  const builder = new PlanBuilder('elf', 'v1', reader.size);
  sweepPrefixLayout(builder, {
    prefixEnd,
    covered,
    zeroed,
    gapReason: 'not in any segment',
    tailReason: 'after the last segment: section headers, symbols, debug info (not loaded)',
  });
  builder.details.class = header.is64 ? 'ELF64' : 'ELF32';
  builder.details.data = header.littleEndian ? 'LE' : 'BE';
  builder.details.type = header.type === ET_EXEC ? 'ET_EXEC' : 'ET_DYN';
  builder.details.machine = machineName(header.machine);
  builder.details.segments = segments.length;
  builder.details.loadSegments = loads.length;
  if (interpreter !== undefined) builder.details.interpreter = interpreter;
  if (buildId !== undefined) builder.details.buildId = Array.from(buildId.note.buildId ?? [], (b) => b.toString(16).padStart(2, '0')).join('');
  return builder.finish();
}

/**
 * PT_LOAD rules of the kernel and ld.so: at least one; p_filesz <= p_memsz; a power-of-two
 * p_align with p_offset and p_vaddr congruent modulo it; ascending, disjoint virtual ranges
 * that do not wrap around the address space.
 */
function checkLoads(header: ElfHeader, loads: readonly ProgramHeader[]): void {
  if (loads.length === 0) throw new MalformedBinaryError('elf', 'no PT_LOAD segment: nothing would be loaded', header.phoff);
  const top = 1n << (header.is64 ? 64n : 32n);
  let prev: ProgramHeader | undefined;
  for (const s of loads) {
    const at = header.phoff + s.index * header.phentsize;
    if (s.filesz > s.memsz) {
      throw new MalformedBinaryError('elf', `${s.label}: p_filesz ${hex64(s.filesz)} > p_memsz ${hex64(s.memsz)}`, at);
    }
    if (s.align > 1n) {
      if ((s.align & (s.align - 1n)) !== 0n) {
        throw new MalformedBinaryError('elf', `${s.label}: p_align ${hex64(s.align)} is not a power of two`, at);
      }
      if (s.offset % s.align !== s.vaddr % s.align) {
        throw new MalformedBinaryError('elf', `${s.label}: p_offset ${hex64(s.offset)} and p_vaddr ${hex64(s.vaddr)} differ modulo p_align ${hex64(s.align)}`, at);
      }
    }
    if (s.vaddr + s.memsz > top) {
      throw new MalformedBinaryError('elf', `${s.label}: virtual range ${hex64(s.vaddr)} + ${hex64(s.memsz)} wraps past the end of the address space`, at);
    }
    if (prev !== undefined) {
      if (s.vaddr < prev.vaddr) {
        throw new MalformedBinaryError('elf', `${s.label}: PT_LOAD segments not in ascending p_vaddr order (${hex64(s.vaddr)} after ${hex64(prev.vaddr)} in ${prev.label})`, at);
      }
      if (prev.vaddr + prev.memsz > s.vaddr) {
        throw new MalformedBinaryError(
          'elf',
          `${s.label}: virtual range starting at ${hex64(s.vaddr)} overlaps ${prev.label} [${hex64(prev.vaddr)}, ${hex64(prev.vaddr + prev.memsz)})`,
          at,
        );
      }
    }
    prev = s;
  }
}

/**
 * Segments other than PT_LOAD are read by file offset (kernel, readelf) and by address
 * (ld.so, unwinders): their file bytes must be exactly what is loaded at their address.
 * So each one with file bytes lies inside one PT_LOAD's file bytes at the same
 * vaddr-offset delta, or outside every PT_LOAD in both the file and memory.
 */
function checkOtherSegments(header: ElfHeader, segments: readonly ProgramHeader[], loads: readonly ProgramHeader[]): void {
  const seen = new Map<number, ProgramHeader>();
  for (const s of segments) {
    if (s.type === PT_LOAD) continue;
    const at = header.phoff + s.index * header.phentsize;
    const first = seen.get(s.type);
    if (first !== undefined) {
      throw new MalformedBinaryError('elf', `${s.label}: a second ${typeName(s.type)} (the first is ${first.label}); loaders and readers may pick different ones`, at);
    }
    if (SINGLETON_TYPES.includes(s.type)) seen.set(s.type, s);
    if (s.type === PT_PHDR) {
      const tableSize = BigInt(header.phnum * header.phentsize);
      if (s.offset !== BigInt(header.phoff) || s.filesz !== tableSize) {
        throw new MalformedBinaryError(
          'elf',
          `${s.label}: offset ${hex64(s.offset)} size ${hex64(s.filesz)} is not the program header table (e_phoff ${hex(header.phoff)}, size ${hex64(tableSize)})`,
          at,
        );
      }
    }
    // PT_GNU_RELRO names an address range for ld.so to mprotect after relocation; no one
    // reads its file bytes, and lld (18 and later) gives it p_filesz = p_memsz, running past
    // its PT_LOAD's file bytes over the NOBITS .relro_padding. Its file range is still kept.
    if (s.file.end === s.file.start || s.type === PT_GNU_RELRO) continue;
    checkAgainstLoads(s, loads, at);
  }
}

function checkAgainstLoads(s: ProgramHeader, loads: readonly ProgramHeader[], at: number): void {
  const delta = s.vaddr - s.offset;
  let inside: ProgramHeader | undefined;
  for (const l of loads) {
    if (!overlaps(s.file, l.file)) continue;
    if (s.file.start < l.file.start || s.file.end > l.file.end) {
      throw new MalformedBinaryError(
        'elf',
        `${s.label} file range [${hex(s.file.start)}, ${hex(s.file.end)}) partially overlaps ${l.label} [${hex(l.file.start)}, ${hex(l.file.end)})`,
        at,
      );
    }
    if (l.vaddr - l.offset === delta) return;
    inside = l;
  }
  if (inside !== undefined) {
    throw new MalformedBinaryError(
      'elf',
      `${s.label} lies inside ${inside.label} in the file, but at p_vaddr ${hex64(s.vaddr)} (vaddr - offset ${hex64(delta)}) instead of ${hex64(s.offset + inside.vaddr - inside.offset)} (the loader and file readers would see different bytes)`,
      at,
    );
  }
  // Not loaded from the file: its address must not point into loaded memory either.
  const vEnd = s.vaddr + s.filesz;
  for (const l of loads) {
    if (l.memsz > 0n && s.vaddr < l.vaddr + l.memsz && l.vaddr < vEnd) {
      throw new MalformedBinaryError(
        'elf',
        `${s.label} is in no PT_LOAD's file bytes, but its virtual range [${hex64(s.vaddr)}, ${hex64(vEnd)}) lies in ${l.label}'s memory (the loader and file readers would see different bytes)`,
        at,
      );
    }
  }
}

/** The kernel's rules for PT_INTERP: 2 to PATH_MAX bytes, the last one NUL. */
function readInterpreter(reader: ByteReader, segments: readonly ProgramHeader[]): string | undefined {
  const s = segments.find((p) => p.type === PT_INTERP);
  if (s === undefined) return undefined;
  const length = s.file.end - s.file.start;
  if (length < 2 || length > MAX_INTERP_BYTES) {
    throw new MalformedBinaryError('elf', `${s.label}: interpreter path is ${length} bytes, the kernel accepts 2 to ${MAX_INTERP_BYTES}`, s.file.start);
  }
  const bytes = readExact(reader, 'elf', s.label, s.file.start, length);
  if (bytes[length - 1] !== 0) {
    throw new MalformedBinaryError('elf', `${s.label}: interpreter path at ${hex(s.file.start)} is not NUL-terminated`, s.file.end - 1);
  }
  return printable(bytes.subarray(0, bytes.indexOf(0)));
}

/** ASCII as is, anything else as \xNN, at most 256 characters: safe for a terminal. */
function printable(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes.subarray(0, 256)) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return bytes.length > 256 ? `${out}…` : out;
}

interface BuildId {
  readonly note: Note;
  /** Every PT_NOTE segment that holds this note at this position. */
  readonly segments: readonly ProgramHeader[];
}

/** Parse every PT_NOTE strictly and return the one NT_GNU_BUILD_ID note, if any. */
function findBuildId(reader: ByteReader, header: ElfHeader, segments: readonly ProgramHeader[]): BuildId | undefined {
  const budget: NoteBudget = { used: 0 };
  let found: Note | undefined;
  const holders: ProgramHeader[] = [];
  for (const s of segments) {
    if (s.type !== PT_NOTE) continue;
    for (const note of parseNotes(reader, s, header.littleEndian, budget)) {
      if (!note.isBuildId) continue;
      if (found !== undefined && (found.desc.start !== note.desc.start || found.desc.end !== note.desc.end)) {
        throw new MalformedBinaryError('elf', `two NT_GNU_BUILD_ID notes (descriptors at ${hex(found.desc.start)} and ${hex(note.desc.start)}): the build id is ambiguous`, note.start);
      }
      found = note;
      holders.push(s);
    }
  }
  return found === undefined ? undefined : { note: found, segments: holders };
}

/**
 * Zeroing must not change anything a loader interprets. The e_sh* fields may lie in PT_LOAD
 * bytes (opaque to the loader), the build-id descriptor in PT_LOAD bytes and in the PT_NOTE
 * segments that hold that very note; neither in any other segment (PT_INTERP, PT_DYNAMIC,
 * PT_GNU_PROPERTY, a note read from another offset…), and the descriptor neither in the
 * rest of the ELF header nor in the program header table. PT_GNU_RELRO has no content.
 */
function checkZeroedRanges(header: ElfHeader, table: FileRange, segments: readonly ProgramHeader[], buildId: BuildId | undefined): void {
  const check = (z: FileRange, what: string, exempt: readonly ProgramHeader[]) => {
    for (const s of segments) {
      if (s.type === PT_LOAD || s.type === PT_GNU_RELRO || exempt.includes(s) || !overlaps(z, s.file)) continue;
      throw new MalformedBinaryError('elf', `${what} at [${hex(z.start)}, ${hex(z.end)}) overlaps ${s.label}, which zeroing would change`, z.start);
    }
  };
  for (const f of header.sectionFields) check(f, f.name, []);
  if (buildId === undefined) return;
  const desc = buildId.note.desc;
  const what = 'the NT_GNU_BUILD_ID descriptor';
  if (overlaps(desc, { start: 0, end: header.ehsize })) {
    throw new MalformedBinaryError('elf', `${what} at [${hex(desc.start)}, ${hex(desc.end)}) overlaps the ELF header`, desc.start);
  }
  if (overlaps(desc, table)) {
    throw new MalformedBinaryError('elf', `${what} at [${hex(desc.start)}, ${hex(desc.end)}) overlaps the program header table`, desc.start);
  }
  check(desc, what, buildId.segments);
}

function overlaps(a: FileRange, b: FileRange): boolean {
  return a.start < b.end && b.start < a.end;
}
