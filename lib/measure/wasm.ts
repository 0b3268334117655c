// Profile v1 for WebAssembly core modules: the module with its debug-only custom sections
// removed and every kept section's size re-encoded as minimal LEB128.
//
// An engine reads a module as the 8-byte header followed by sections (id byte, LEB128 u32
// size, content). Custom sections (id 0) never change what the engine executes, but some of
// them are read by linkers and embedders (dylink.0, target_features, …), so only the ones
// that are debug data by definition are dropped: `name`, `producers`, `sourceMappingURL`,
// `external_debug_info` and `.debug_*`. Sizes are re-encoded because the same module may be
// written with padded LEB128s (Go writes 5 bytes, wat2wasm --no-canonicalize-leb128s too);
// after that the canonical bytes equal `wasm-strip`'s output for modules whose only custom
// sections are the dropped ones. Section contents are kept byte for byte and left to the
// engine to validate; the walk itself refuses anything that could be read two ways.
import { MalformedBinaryError, UnsupportedBinaryError, hex } from '../errors.js';
import { PlanBuilder } from './plan-builder.js';
import { MAX_STRUCTURE_READ, readExact } from './read.js';
import { MAX_U32_LEB_BYTES, decodeU32Leb, decodeUtf8, encodeU32Leb, invalidUtf8At } from './wasm-encoding.js';
import type { ByteReader, CanonicalPlan } from './types.js';

const HEADER_BYTES = 8;
const MAGIC = [0x00, 0x61, 0x73, 0x6d];

/**
 * A module has at most 13 non-custom sections, but any number of custom ones; every section
 * costs a few explanation ranges in memory, so a file made of millions of tiny custom
 * sections is refused instead of exhausting the host. No real toolchain comes near this.
 */
export const MAX_WASM_SECTIONS = 100_000;

/** Section names by id (0 = custom, 13 = tag from the exception-handling proposal). */
const SECTION_NAMES = ['custom', 'type', 'import', 'function', 'table', 'memory', 'global', 'export', 'start', 'element', 'code', 'data', 'datacount', 'tag'] as const;

/** The order non-custom sections must appear in (by id): datacount before code, tag after memory. */
const SECTION_ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11] as const;
const RANK = new Map<number, number>(SECTION_ORDER.map((id, rank) => [id, rank]));

/** Custom sections that are debug or toolchain data by definition, with why they go. */
const DROPPED_NAMES: ReadonlyMap<string, string> = new Map([
  ['name', 'debug info, not used by the engine'],
  ['producers', 'toolchain metadata, not used by the engine'],
  ['sourceMappingURL', 'source map location for debuggers, not used by the engine'],
  ['external_debug_info', 'location of separate debug info, not used by the engine'],
]);
const DWARF_PREFIX = '.debug_';
const DWARF_REASON = 'DWARF debug info, not used by the engine';

/** How many kept custom section names `details` lists before summarizing. */
const LISTED_NAMES = 8;

export function planWasm(reader: ByteReader): CanonicalPlan {
  const size = reader.size;
  if (size < HEADER_BYTES) {
    throw new MalformedBinaryError('wasm', `WebAssembly header truncated: the file is ${size} bytes, magic and version take ${HEADER_BYTES}`, 0);
  }
  checkHeader(readExact(reader, 'wasm', 'WebAssembly header', 0, HEADER_BYTES));

  const builder = new PlanBuilder('wasm', 'v1', size);
  builder.keep(HEADER_BYTES, 'module header (magic \\0asm, version 1)');

  const keptCustom: string[] = [];
  let dropped = 0;
  let sections = 0;
  let lastRank = -1;
  let lastId = 0;
  let lastAt = 0;
  // Every section takes at least 2 bytes (id + size), so this loop runs at most
  // (size - 8) / 2 times, and never more than MAX_WASM_SECTIONS times.
  for (let pos = HEADER_BYTES; pos < size; ) {
    if (sections === MAX_WASM_SECTIONS) {
      throw new UnsupportedBinaryError('wasm', `more than ${MAX_WASM_SECTIONS} sections (the next starts at ${hex(pos)}); profile v1 refuses modules with that many`);
    }
    const index = sections++;
    const head = readExact(reader, 'wasm', `section ${index} header`, pos, Math.min(1 + MAX_U32_LEB_BYTES, size - pos));
    const id = head[0]!;
    const name = SECTION_NAMES[id];
    if (name === undefined) {
      throw new MalformedBinaryError('wasm', `section ${index} at ${hex(pos)}: unknown section id ${id} (known ids are 0 to ${SECTION_NAMES.length - 1})`, pos);
    }
    const label = `section ${index} at ${hex(pos)} (id ${id}, ${name})`;
    const leb = decodeU32Leb(head, 1, head.length, pos, `${label} size`, 'end of file');
    const contentStart = pos + 1 + leb.length;
    const contentEnd = contentStart + leb.value;
    if (leb.value > size - contentStart) {
      throw new MalformedBinaryError('wasm', `${label} content extends past end of file (offset ${hex(contentStart)} + size ${hex(leb.value)} > file size ${hex(size)})`, contentStart);
    }
    const idAndSize = Uint8Array.from([id, ...encodeU32Leb(leb.value)]);

    if (id !== 0) {
      const rank = RANK.get(id)!;
      if (rank === lastRank) {
        throw new MalformedBinaryError('wasm', `${label}: duplicate ${name} section (the first one is at ${hex(lastAt)}; a module has at most one)`, pos);
      }
      if (rank < lastRank) {
        throw new MalformedBinaryError('wasm', `${label}: out of order, the ${name} section must come before the ${SECTION_NAMES[lastId]} section (id ${lastId}) at ${hex(lastAt)}`, pos);
      }
      [lastRank, lastId, lastAt] = [rank, id, pos];
      builder.rewrite(contentStart, idAndSize, `section ${id} (${name}) id and size, size re-encoded minimally`);
      builder.keep(contentEnd, `section ${id} (${name}) content`);
    } else {
      const custom = readCustomName(reader, label, contentStart, contentEnd);
      checkLinkingRole(custom, index, label);
      const why = droppedReason(custom.bytes);
      if (why !== undefined) {
        dropped++;
        builder.drop(contentEnd, `custom section ${custom.display} (${why})`);
      } else {
        keptCustom.push(custom.display);
        builder.rewrite(contentStart, idAndSize, `section 0 (custom ${custom.display}) id and size, size re-encoded minimally`);
        builder.keep(contentEnd, `custom section ${custom.display} content (kept: not debug data, it can change linking or what an embedder reads)`);
      }
    }
    pos = contentEnd;
  }

  builder.details.sections = sections;
  builder.details.customSectionsKept = listNames(keptCustom);
  builder.details.customSectionsDropped = dropped;
  return builder.finish();
}

/** Accept `\0asm` version 1 only; name components (layer 1) and other versions precisely. */
function checkHeader(header: Uint8Array): void {
  if (MAGIC.some((b, i) => header[i] !== b)) {
    const seen = Array.from(header.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new MalformedBinaryError('wasm', `not a WebAssembly binary: magic is ${seen}, expected 00 61 73 6d`, 0);
  }
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const version = view.getUint16(4, true);
  const layer = view.getUint16(6, true);
  if (layer === 1) {
    throw new UnsupportedBinaryError('wasm', `WebAssembly component (layer 1, version ${hex(version)}): profile v1 measures core modules only`);
  }
  if (layer !== 0 || version !== 1) {
    throw new UnsupportedBinaryError('wasm', `WebAssembly binary version ${hex(view.getUint32(4, true))}: profile v1 measures core modules of version 1 only`);
  }
}

interface CustomName {
  readonly bytes: Uint8Array;
  /** Quoted, escaped, possibly shortened: safe to print in a terminal or a details line. */
  readonly display: string;
}

/** Read and check a custom section's name: LEB length + UTF-8 bytes, inside the section. */
function readCustomName(reader: ByteReader, label: string, contentStart: number, contentEnd: number): CustomName {
  const lebBytes = readExact(reader, 'wasm', `${label} name length`, contentStart, Math.min(MAX_U32_LEB_BYTES, contentEnd - contentStart));
  const leb = decodeU32Leb(lebBytes, 0, lebBytes.length, contentStart, `${label} name length`, 'end of the section');
  const nameStart = contentStart + leb.length;
  if (leb.value > contentEnd - nameStart) {
    throw new MalformedBinaryError('wasm', `${label}: name (${leb.value} bytes at ${hex(nameStart)}) extends past the end of the section at ${hex(contentEnd)}`, nameStart);
  }
  if (leb.value > MAX_STRUCTURE_READ) {
    throw new UnsupportedBinaryError('wasm', `${label}: custom section name is ${leb.value} bytes; profile v1 reads names up to ${MAX_STRUCTURE_READ} bytes`);
  }
  const bytes = readExact(reader, 'wasm', `${label} name`, nameStart, leb.value);
  const bad = invalidUtf8At(bytes);
  if (bad >= 0) {
    throw new MalformedBinaryError('wasm', `${label}: name is not valid UTF-8 (byte ${hex(bytes[bad]!)} at ${hex(nameStart + bad)})`, nameStart + bad);
  }
  return { bytes, display: displayName(bytes) };
}

/**
 * Custom sections that decide how a module is linked are checked where they sit:
 * `linking` / `reloc.*` make a relocatable object file (the WebAssembly ET_REL, refused like
 * ELF's), and `dylink.0` is only honoured as the first section: anywhere else a dynamic
 * linker and a plain engine would disagree about what the module is.
 */
function checkLinkingRole(custom: CustomName, index: number, label: string): void {
  const { bytes } = custom;
  if ((bytes.length === 7 && startsWithAscii(bytes, 'linking')) || startsWithAscii(bytes, 'reloc.')) {
    throw new UnsupportedBinaryError('wasm', `${label}: custom section ${custom.display} marks a relocatable object file; profile v1 measures linked modules only`);
  }
  if (bytes.length === 8 && startsWithAscii(bytes, 'dylink.0') && index !== 0) {
    throw new MalformedBinaryError('wasm', `${label}: custom section "dylink.0" must be the module's first section (it is section ${index})`);
  }
}

/** Why a custom section with this (valid UTF-8) name is dropped, or undefined if it is kept. */
function droppedReason(name: Uint8Array): string | undefined {
  // Compare bytes, not decoded text: names may be megabytes long; the dropped ones are ASCII.
  for (const [known, why] of DROPPED_NAMES) if (name.length === known.length && startsWithAscii(name, known)) return why;
  return startsWithAscii(name, DWARF_PREFIX) ? DWARF_REASON : undefined;
}

function startsWithAscii(bytes: Uint8Array, text: string): boolean {
  if (bytes.length < text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * A name as `"…"`: printable ASCII as is, everything else (controls, C1, bidi overrides,
 * quotes) as \u{…}, so a hostile name cannot steer a terminal or split a details line;
 * at most 64 code points, longer names end in `…(N bytes)`.
 */
function displayName(bytes: Uint8Array): string {
  const { text, complete } = decodeUtf8(bytes, 64);
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    out += cp > 0x20 && cp < 0x7f && ch !== '"' && ch !== '\\' ? ch : `\\u{${cp.toString(16)}}`;
  }
  return `"${out}${complete ? '' : `…(${bytes.length} bytes)`}"`;
}

function listNames(names: readonly string[]): string {
  if (names.length === 0) return 'none';
  const shown = names.slice(0, LISTED_NAMES).join(',');
  return names.length > LISTED_NAMES ? `${shown} and ${names.length - LISTED_NAMES} more` : shown;
}
