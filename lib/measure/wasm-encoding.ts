// The two encodings the WebAssembly section walk needs: LEB128 u32 (section sizes, name
// lengths) and UTF-8 (custom section names). Both are strict: the binary format allows one
// reading only, and a lenient decoder here would let a file mean one thing to us and another
// to the engine. No TextDecoder: the pure core has no DOM or Node types.
import { MalformedBinaryError, hex } from '../errors.js';

/** A u32 LEB128 takes at most ceil(32 / 7) = 5 bytes. */
export const MAX_U32_LEB_BYTES = 5;

export interface Leb {
  readonly value: number;
  /** Encoded length in bytes (1..5). */
  readonly length: number;
}

/**
 * Decode a u32 LEB128 from `bytes[start..end)`. `fileOffset` is the file offset of
 * `bytes[0]` (for messages); `what` names the field; `endWhat` names what stops it
 * ("end of file", "end of section 0"). Refuses: running into `end`, a 5th byte with the
 * continuation bit set, and a 5th byte with any of its unused high bits set (value >= 2^32).
 */
export function decodeU32Leb(bytes: Uint8Array, start: number, end: number, fileOffset: number, what: string, endWhat: string): Leb {
  let value = 0;
  for (let i = 0; i < MAX_U32_LEB_BYTES; i++) {
    const at = start + i;
    if (at >= end) {
      throw new MalformedBinaryError('wasm', `${what} is truncated: its LEB128 at ${hex(fileOffset + start)} runs into the ${endWhat} at ${hex(fileOffset + at)}`, fileOffset + start);
    }
    const byte = bytes[at]!;
    if (i === MAX_U32_LEB_BYTES - 1) {
      if (byte & 0x80) {
        throw new MalformedBinaryError('wasm', `${what}: LEB128 at ${hex(fileOffset + start)} is longer than ${MAX_U32_LEB_BYTES} bytes (a u32 takes at most ${MAX_U32_LEB_BYTES})`, fileOffset + start);
      }
      if (byte & 0x70) {
        throw new MalformedBinaryError('wasm', `${what}: LEB128 at ${hex(fileOffset + start)} overflows 32 bits (5th byte ${hex(byte)} has unused high bits set)`, fileOffset + start);
      }
    }
    // Multiplication, not <<: bits 28..31 must not turn the number negative.
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return { value, length: i + 1 };
  }
  // Unreachable: the 5th byte either ends the number or throws above.
  throw new MalformedBinaryError('wasm', `${what}: bad LEB128 at ${hex(fileOffset + start)}`, fileOffset + start);
}

/** The shortest LEB128 encoding of a u32 (what wasm-strip and engines' encoders write). */
export function encodeU32Leb(value: number): Uint8Array {
  const out: number[] = [];
  let rest = value;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest !== 0) byte |= 0x80;
    out.push(byte);
  } while (rest !== 0);
  return Uint8Array.from(out);
}

/**
 * Index of the first byte of `bytes` that breaks strict UTF-8, or -1 when all of it is valid.
 * Strict means: no overlong forms, no UTF-16 surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no stray or missing continuation bytes (the Unicode "well-formed" table).
 */
export function invalidUtf8At(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b === 0xe0) [need, lo] = [2, 0xa0]; // below would be overlong
    else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) need = 2;
    else if (b === 0xed) [need, hi] = [2, 0x9f]; // above would be a surrogate
    else if (b === 0xf0) [need, lo] = [3, 0x90]; // below would be overlong
    else if (b >= 0xf1 && b <= 0xf3) need = 3;
    else if (b === 0xf4) [need, hi] = [3, 0x8f]; // above would pass U+10FFFF
    else return i; // 0x80..0xc1 (continuation or overlong lead), 0xf5..0xff
    if (i + need >= bytes.length) return i; // sequence cut short by the end of the name
    const second = bytes[i + 1]!;
    if (second < lo || second > hi) return i;
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k]!;
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** Decode bytes already checked by invalidUtf8At; stops after `maxCodePoints` code points. */
export function decodeUtf8(bytes: Uint8Array, maxCodePoints: number): { text: string; complete: boolean } {
  const points: number[] = [];
  let i = 0;
  while (i < bytes.length && points.length < maxCodePoints) {
    const b = bytes[i]!;
    let cp: number;
    let n: number;
    if (b < 0x80) [cp, n] = [b, 1];
    else if (b < 0xe0) [cp, n] = [b & 0x1f, 2];
    else if (b < 0xf0) [cp, n] = [b & 0x0f, 3];
    else [cp, n] = [b & 0x07, 4];
    for (let k = 1; k < n; k++) cp = (cp << 6) | (bytes[i + k]! & 0x3f);
    points.push(cp);
    i += n;
  }
  return { text: String.fromCodePoint(...points), complete: i >= bytes.length };
}
