// A complete structural check of a VCDIFF delta (RFC 3284) before it is handed to the decoder.
// Why: @ably/vcdiff-decoder checks almost nothing. It ignores Hdr_Indicator's VCD_APPHEADER
// bit (and then reads the header as a window), ignores xdelta3's adler32 window checksum
// (Win_Indicator 0x04), clamps a source segment that lies past the end of the base, reads
// missing data or address bytes as 0, and silently drops instructions that write past a
// window's end. Each of those turns a bad delta into WRONG BYTES without an error. So every
// field is checked here, every instruction is walked (sizes, data, addresses, caches) without
// copying bytes, and only a delta that can be decoded in exactly one way reaches the decoder.
// The walk costs O(delta size); the decoder then does at most `targetBytes` byte copies.
import { hex, InternalError } from '../errors.js';
import { PatchError } from './errors.js';

const MAGIC = [0xd6, 0xc3, 0xc4, 0x00] as const;

// Hdr_Indicator bits (RFC 3284 section 4.1).
const VCD_DECOMPRESS = 0x01;
const VCD_CODETABLE = 0x02;
const VCD_APPHEADER = 0x04;
// Win_Indicator bits (section 4.2), plus xdelta3's extension.
const VCD_SOURCE = 0x01;
const VCD_TARGET = 0x02;
const XDELTA3_ADLER32 = 0x04;

/** The decoder parses integers into 32-bit signed numbers: anything larger is refused. */
const MAX_INTEGER = 0x7fffffff;
/** Windows per delta: 65536 windows of 4 KiB already make a 256 MiB file. */
export const MAX_WINDOWS = 65536;
/** 31 bits in 7-bit groups: 5 bytes; more would only be leading zero groups. */
const MAX_INTEGER_BYTES = 5;

const NEAR_SLOTS = 4;
const SAME_SLOTS = 3;

const enum Op {
  Noop = 0,
  Add = 1,
  Run = 2,
  Copy = 3,
}

interface Half {
  readonly op: Op;
  /** 0: the size follows in the instruction section. */
  readonly size: number;
  readonly mode: number;
}

export interface VcdiffSummary {
  readonly windows: number;
  /** Sum of the windows' target lengths: the size of the decoded file. */
  readonly targetBytes: number;
}

/**
 * Check that `delta` is a plain RFC 3284 delta the decoder decodes exactly: no application
 * header, no secondary compression, the default code table, no checksums, VCD_TARGET-free
 * windows whose source segments lie inside a base of `baseSize` bytes, and a total target
 * of at most `maxTargetBytes`. Throws PatchError naming the offset of the first problem.
 */
export function inspectVcdiff(delta: Uint8Array, baseSize: number, maxTargetBytes: number): VcdiffSummary {
  if (delta.length < 5) throw new PatchError('EMALFORMED', `delta is ${delta.length} bytes, shorter than the 5-byte header`);
  for (let i = 0; i < MAGIC.length; i++) {
    if (delta[i] !== MAGIC[i]) {
      const got = [...delta.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      throw new PatchError('EMALFORMED', `not a VCDIFF delta: magic is ${got}, expected d6 c3 c4 00 (RFC 3284, as written by xdelta3 -e)`, 0);
    }
  }
  checkHeaderIndicator(delta[4]!);

  let pos = 5;
  let windows = 0;
  let targetBytes = 0;
  while (pos < delta.length) {
    if (windows === MAX_WINDOWS) throw new PatchError('EMALFORMED', `delta has more than ${MAX_WINDOWS} windows (xdelta3 writes one per source window of MiBs)`, pos);
    const w = checkWindow(delta, pos, windows, baseSize, maxTargetBytes - targetBytes, maxTargetBytes);
    // An empty window adds nothing: xdelta3 writes one for an empty file, alone; a delta of a
    // million of them only costs its reader time.
    if (w.targetLength === 0 && (windows > 0 || w.end < delta.length)) throw new PatchError('EMALFORMED', `window ${windows} has an empty target, and is not the delta's only window`, pos);
    targetBytes += w.targetLength;
    pos = w.end;
    windows++;
  }
  return { windows, targetBytes };
}

function checkHeaderIndicator(ind: number): void {
  const found: string[] = [];
  if (ind & VCD_DECOMPRESS) found.push('VCD_DECOMPRESS (secondary compression)');
  if (ind & VCD_CODETABLE) found.push('VCD_CODETABLE (a custom code table)');
  if (ind & VCD_APPHEADER) found.push('VCD_APPHEADER (an application header)');
  if (ind & ~0x07) throw new PatchError('EMALFORMED', `Hdr_Indicator ${hex(ind)} has bits RFC 3284 does not define (${hex(ind & ~0x07)})`, 4);
  if (found.length > 0) {
    throw new PatchError(
      'EUNSUPPORTED',
      `Hdr_Indicator ${hex(ind)} asks for ${found.join(', ')}, which the decoder does not support; create the delta with \`xdelta3 -e -A -S none -n -s OLD NEW PATCH\``,
      4,
    );
  }
}

/** Reads RFC 3284 integers and bytes from one part of the delta, never past `end`. */
class Cursor {
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
    private readonly end: number,
    private readonly where: string,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  byte(what: string): number {
    if (this.pos >= this.end) throw new PatchError('EMALFORMED', `${this.where}: ${what} is missing: ${this.where} ends at ${hex(this.end)}`, this.pos);
    return this.bytes[this.pos++]!;
  }

  integer(what: string): number {
    const start = this.pos;
    let value = 0;
    for (let n = 1; ; n++) {
      if (this.pos >= this.end) throw new PatchError('EMALFORMED', `${this.where}: ${what} runs past the end of ${this.where} (${hex(this.end)})`, start);
      const b = this.bytes[this.pos++]!;
      value = value * 128 + (b & 0x7f);
      if (value > MAX_INTEGER) throw new PatchError('EMALFORMED', `${this.where}: ${what} is larger than ${hex(MAX_INTEGER)}`, start);
      if ((b & 0x80) === 0) return value;
      if (n === MAX_INTEGER_BYTES) throw new PatchError('EMALFORMED', `${this.where}: ${what} is encoded in more than ${MAX_INTEGER_BYTES} bytes`, start);
    }
  }
}

function checkWindow(delta: Uint8Array, start: number, index: number, baseSize: number, targetBudget: number, maxTargetBytes: number): { end: number; targetLength: number } {
  const where = `window ${index}`;
  const head = new Cursor(delta, start, delta.length, where);
  const ind = head.byte('Win_Indicator');
  if (ind & XDELTA3_ADLER32) {
    throw new PatchError(
      'EUNSUPPORTED',
      `${where}: Win_Indicator ${hex(ind)} carries xdelta3's adler32 checksum (bit 0x04), which the decoder would skip and mis-read as data; create the delta with \`xdelta3 -e -A -S none -n\` (-n: no checksum)`,
      start,
    );
  }
  if (ind & ~0x03) throw new PatchError('EMALFORMED', `${where}: Win_Indicator ${hex(ind)} has bits RFC 3284 does not define`, start);
  if ((ind & VCD_SOURCE) && (ind & VCD_TARGET)) throw new PatchError('EMALFORMED', `${where}: Win_Indicator ${hex(ind)} sets both VCD_SOURCE and VCD_TARGET`, start);
  if (ind & VCD_TARGET) throw new PatchError('EUNSUPPORTED', `${where}: VCD_TARGET windows (copying from earlier output) are not supported by the decoder`, start);

  let sourceLength = 0;
  if (ind & VCD_SOURCE) {
    const at = head.pos;
    sourceLength = head.integer('source segment length');
    const sourcePosition = head.integer('source segment position');
    if (sourcePosition + sourceLength > baseSize) {
      throw new PatchError(
        'EMALFORMED',
        `${where}: source segment ${hex(sourcePosition)} + ${hex(sourceLength)} extends past the end of the base (${hex(baseSize)} bytes): wrong base or corrupt delta`,
        at,
      );
    }
  }
  const deltaLengthAt = head.pos;
  const deltaLength = head.integer('length of the delta encoding');
  const end = head.pos + deltaLength;
  if (end > delta.length) {
    throw new PatchError('EMALFORMED', `${where}: delta encoding of ${hex(deltaLength)} bytes extends past the end of the delta (${hex(delta.length)} bytes): truncated?`, deltaLengthAt);
  }

  const enc = new Cursor(delta, head.pos, end, `${where} delta encoding`);
  const targetAt = enc.pos;
  const targetLength = enc.integer('target window length');
  if (targetLength > targetBudget) {
    throw new PatchError('EMALFORMED', `${where}: target window of ${targetLength} bytes would make the patched file larger than the limit of ${maxTargetBytes} bytes`, targetAt);
  }
  const deltaIndAt = enc.pos;
  const deltaInd = enc.byte('Delta_Indicator');
  if (deltaInd !== 0) {
    throw new PatchError('EUNSUPPORTED', `${where}: Delta_Indicator ${hex(deltaInd)} asks for secondary compression of sections, which the decoder does not support (xdelta3 -S none)`, deltaIndAt);
  }
  const dataLength = enc.integer('length of data section');
  const instLength = enc.integer('length of instructions section');
  const addrLength = enc.integer('length of addresses section');
  const sectionsEnd = enc.pos + dataLength + instLength + addrLength;
  if (sectionsEnd !== end) {
    throw new PatchError(
      'EMALFORMED',
      `${where}: sections (data ${dataLength} + instructions ${instLength} + addresses ${addrLength} bytes, ending at ${hex(sectionsEnd)}) do not end where the delta encoding ends (${hex(end)})`,
      deltaLengthAt,
    );
  }
  const data = new Cursor(delta, enc.pos, enc.pos + dataLength, `${where} data section`);
  const inst = new Cursor(delta, enc.pos + dataLength, enc.pos + dataLength + instLength, `${where} instructions section`);
  const addr = new Cursor(delta, enc.pos + dataLength + instLength, end, `${where} addresses section`);

  walkInstructions(where, inst, data, addr, sourceLength, targetLength);
  if (data.remaining !== 0) throw new PatchError('EMALFORMED', `${where}: ${data.remaining} bytes of the data section are not used by any instruction`, data.pos);
  if (addr.remaining !== 0) throw new PatchError('EMALFORMED', `${where}: ${addr.remaining} bytes of the addresses section are not used by any instruction`, addr.pos);
  return { end, targetLength };
}

/** Every instruction, as the decoder will execute it; checks sizes, data and addresses. */
function walkInstructions(where: string, inst: Cursor, data: Cursor, addr: Cursor, sourceLength: number, targetLength: number): void {
  const near = new Array<number>(NEAR_SLOTS).fill(0);
  let nextNear = 0;
  const same = new Array<number>(SAME_SLOTS * 256).fill(0);
  let written = 0;
  while (inst.remaining > 0) {
    const codeAt = inst.pos;
    const pair = CODE_TABLE[inst.byte('instruction code')]!;
    for (const half of pair) {
      if (half.op === Op.Noop) continue;
      const size = half.size !== 0 ? half.size : inst.integer('instruction size');
      if (size > targetLength - written) {
        throw new PatchError('EMALFORMED', `${where}: instruction at ${hex(codeAt)} writes ${size} bytes at target offset ${written}, past the window's ${targetLength} bytes`, codeAt);
      }
      if (half.op === Op.Add) {
        if (size > data.remaining) throw new PatchError('EMALFORMED', `${where}: ADD of ${size} bytes at ${hex(codeAt)} runs past the data section (${data.remaining} bytes left)`, codeAt);
        data.pos += size;
      } else if (half.op === Op.Run) {
        data.byte('RUN byte');
      } else {
        const here = sourceLength + written;
        let address: number;
        if (half.mode === 0) address = addr.integer('COPY address');
        else if (half.mode === 1) address = here - addr.integer('COPY address');
        else if (half.mode < 2 + NEAR_SLOTS) address = near[half.mode - 2]! + addr.integer('COPY address');
        else address = same[(half.mode - 2 - NEAR_SLOTS) * 256 + addr.byte('COPY address byte')]!;
        // RFC 3284 5.3: a COPY reads from before the current position ("here").
        if (!(address >= 0 && address < here)) {
          throw new PatchError('EMALFORMED', `${where}: COPY at ${hex(codeAt)} (mode ${half.mode}) reads from address ${address}, outside 0..${here - 1} (source segment ${sourceLength} + target so far ${written})`, codeAt);
        }
        near[nextNear] = address;
        nextNear = (nextNear + 1) % NEAR_SLOTS;
        same[address % (SAME_SLOTS * 256)] = address;
      }
      written += size;
    }
  }
  if (written !== targetLength) throw new PatchError('EMALFORMED', `${where}: instructions produce ${written} bytes, but the target window length is ${targetLength}`, inst.pos);
}

/** The default instruction code table of RFC 3284 section 5.6 (s_near = 4, s_same = 3). */
const CODE_TABLE: readonly (readonly [Half, Half])[] = (() => {
  const noop: Half = { op: Op.Noop, size: 0, mode: 0 };
  const t: [Half, Half][] = [[{ op: Op.Run, size: 0, mode: 0 }, noop]];
  for (let size = 0; size <= 17; size++) t.push([{ op: Op.Add, size, mode: 0 }, noop]);
  for (let mode = 0; mode <= 8; mode++) {
    t.push([{ op: Op.Copy, size: 0, mode }, noop]);
    for (let size = 4; size <= 18; size++) t.push([{ op: Op.Copy, size, mode }, noop]);
  }
  for (let mode = 0; mode <= 5; mode++) {
    for (let add = 1; add <= 4; add++) for (let copy = 4; copy <= 6; copy++) t.push([{ op: Op.Add, size: add, mode: 0 }, { op: Op.Copy, size: copy, mode }]);
  }
  for (let mode = 6; mode <= 8; mode++) for (let add = 1; add <= 4; add++) t.push([{ op: Op.Add, size: add, mode: 0 }, { op: Op.Copy, size: 4, mode }]);
  for (let mode = 0; mode <= 8; mode++) t.push([{ op: Op.Copy, size: 4, mode }, { op: Op.Add, size: 1, mode: 0 }]);
  if (t.length !== 256) throw new InternalError(`VCDIFF code table has ${t.length} entries`);
  return t;
})();
