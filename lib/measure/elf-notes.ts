// Strict parsing of PT_NOTE segments, to find the NT_GNU_BUILD_ID descriptor v1 zeroes.
//
// A note is a 12-byte header (namesz, descsz, type), the name padded to the segment's
// alignment, then the descriptor padded the same way. The notes must tile the segment
// exactly: trailing bytes that are not a whole note, or a note that runs past the end, make
// the segment readable in more than one way (glibc and readelf stop at different places), so
// they are refused rather than skipped.
import { MalformedBinaryError, UnsupportedBinaryError, hex } from '../errors.js';
import { hex64, type FileRange, type ProgramHeader } from './elf-headers.js';
import { readExact } from './read.js';
import type { ByteReader } from './types.js';

/**
 * The most note bytes v1 parses in one file, over all PT_NOTE segments. Real files carry a
 * few hundred bytes of notes; the cap bounds the work when many program headers point at
 * the same large range.
 */
export const MAX_NOTE_BYTES = 1 << 20;

const NT_GNU_BUILD_ID = 3;
const NOTE_HEADER = 12;
const GNU_NAME = [0x47, 0x4e, 0x55, 0x00]; // "GNU\0"

export interface Note extends FileRange {
  readonly type: number;
  /** Name and descriptor positions in the file. */
  readonly name: FileRange;
  readonly desc: FileRange;
  readonly isBuildId: boolean;
  /** Up to the first 64 descriptor bytes of a build-id note, for `details`. */
  readonly buildId?: Uint8Array;
}

/** Counts note bytes parsed so far, across segments. */
export interface NoteBudget {
  used: number;
}

/** Parse one PT_NOTE segment (with file bytes) into notes that tile it exactly. */
export function parseNotes(reader: ByteReader, ph: ProgramHeader, littleEndian: boolean, budget: NoteBudget): Note[] {
  const { start, end } = ph.file;
  if (end === start) return [];
  if (ph.align !== 4n && ph.align !== 8n) {
    throw new MalformedBinaryError('elf', `${ph.label} has p_align ${hex64(ph.align)}; notes are laid out with 4- or 8-byte alignment only`, start);
  }
  const align = Number(ph.align);
  // glibc walks notes by address, readelf by file offset: both agree only when both are aligned.
  if (ph.offset % ph.align !== 0n || ph.vaddr % ph.align !== 0n) {
    throw new MalformedBinaryError('elf', `${ph.label}: p_offset ${hex64(ph.offset)} or p_vaddr ${hex64(ph.vaddr)} is not a multiple of its p_align ${align}`, start);
  }
  const length = end - start;
  if (length > MAX_NOTE_BYTES - budget.used) {
    throw new UnsupportedBinaryError('elf', `${ph.label} brings the PT_NOTE contents to more than ${MAX_NOTE_BYTES} bytes, the most profile v1 parses`);
  }
  budget.used += length;

  const bytes = readExact(reader, 'elf', ph.label, start, length);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const up = (n: number) => Math.ceil(n / align) * align;
  const notes: Note[] = [];
  // Each note takes at least 12 bytes, so this runs at most length / 12 times.
  for (let pos = 0; pos < length; ) {
    const at = start + pos;
    if (length - pos < NOTE_HEADER) {
      throw new MalformedBinaryError('elf', `${ph.label}: ${length - pos} bytes left at ${hex(at)}, too few for a note header (${NOTE_HEADER})`, at);
    }
    const namesz = view.getUint32(pos, littleEndian);
    const descsz = view.getUint32(pos + 4, littleEndian);
    const type = view.getUint32(pos + 8, littleEndian);
    const descPos = up(pos + NOTE_HEADER + namesz);
    const descEnd = descPos + descsz;
    if (descEnd > length) {
      throw new MalformedBinaryError(
        'elf',
        `${ph.label}: note at ${hex(at)} (namesz ${hex(namesz)}, descsz ${hex(descsz)}, type ${hex(type)}) extends past the end of the segment at ${hex(end)}`,
        at,
      );
    }
    // The last note's padding may be cut off by the segment end; every reader stops there.
    const next = Math.min(up(descEnd), length);
    const isBuildId = type === NT_GNU_BUILD_ID && namesz === GNU_NAME.length && GNU_NAME.every((b, i) => bytes[pos + NOTE_HEADER + i] === b);
    notes.push({
      start: at,
      end: start + next,
      type,
      name: { start: at + NOTE_HEADER, end: at + NOTE_HEADER + namesz },
      desc: { start: start + descPos, end: start + descEnd },
      isBuildId,
      ...(isBuildId ? { buildId: bytes.slice(descPos, Math.min(descEnd, descPos + 64)) } : {}),
    });
    pos = next;
  }
  return notes;
}
