// Strict UTF-8 for JSON payloads. No TextDecoder here: the pure core has no DOM or Node
// types. Strict means the Unicode "well-formed" table: no overlong forms, no surrogates,
// nothing above U+10FFFF, no stray or missing continuation bytes. A lenient decoder would let
// two peers read one payload two ways.
//
// A platform's native codec may be registered (useUtf8Implementation; lib/transport does it
// with TextDecoder/TextEncoder): under QEMU TCG this JS costs a guest 0.16 ms per control
// frame where the native one costs 0.02. A candidate is checked on known well-formed and
// ill-formed sequences first, as the CRC-32 candidates are.
import { InternalError } from '../errors.js';

export interface Utf8Implementation {
  /** The string, or undefined at an ill-formed sequence; a leading U+FEFF is kept, not dropped. */
  decode(bytes: Uint8Array): string | undefined;
  /** UTF-8 of `text`; a lone surrogate becomes U+FFFD. */
  encode(text: string): Uint8Array;
}

let active: Utf8Implementation = { decode: decodeUtf8Portable, encode: encodeUtf8Portable };
let activeName = 'portable';

/** Decode `bytes`, or return undefined at the first ill-formed sequence. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  return active.decode(bytes);
}

/** Encode a well-formed string (a lone surrogate becomes U+FFFD; JSON.stringify never makes one). */
export function encodeUtf8(text: string): Uint8Array {
  return active.encode(text);
}

/** Which implementation is in use: 'portable', or the name given to useUtf8Implementation. */
export function utf8Implementation(): string {
  return activeName;
}

const bytesOf = (...b: number[]): Uint8Array => Uint8Array.from(b);
/** Ill-formed per the Unicode table: overlongs, surrogates, above U+10FFFF, stray, cut, invalid lead bytes. */
const ILL_FORMED: readonly Uint8Array[] = [
  bytesOf(0xc0, 0x80), bytesOf(0xc1, 0xbf), bytesOf(0xe0, 0x80, 0x80), bytesOf(0xe0, 0x9f, 0xbf), bytesOf(0xed, 0xa0, 0x80), bytesOf(0xed, 0xbf, 0xbf),
  bytesOf(0xf0, 0x80, 0x80, 0x80), bytesOf(0xf0, 0x8f, 0xbf, 0xbf), bytesOf(0xf4, 0x90, 0x80, 0x80), bytesOf(0xf5, 0x80, 0x80, 0x80), bytesOf(0xff),
  bytesOf(0x80), bytesOf(0x61, 0xbf), bytesOf(0xe2, 0x82), bytesOf(0xf0, 0x9f, 0x98), bytesOf(0xc3), bytesOf(0xe2, 0x28, 0xa1),
];
const WELL_FORMED: readonly string[] = ['', 'plain ASCII {"a":1}', 'é€𝄞😀 \u0000', '\ufeffleading byte-order mark', '\u07ff\u0800\uffff\ud7ff\ue000', '\udbff\udfff'];

/** Why `impl` is not this module's strict UTF-8, or undefined when it agrees on every case. */
function checkCandidate(impl: Utf8Implementation): string | undefined {
  try {
    for (const text of WELL_FORMED) {
      const bytes = encodeUtf8Portable(text);
      const encoded = impl.encode(text);
      if (encoded.length !== bytes.length || encoded.some((b, i) => b !== bytes[i])) return `encodes ${JSON.stringify(text)} differently`;
      if (impl.decode(bytes) !== text) return `decodes the UTF-8 of ${JSON.stringify(text)} differently`;
      // A view into a larger buffer, at an odd offset.
      const backing = new Uint8Array(bytes.length + 5);
      backing.set(bytes, 3);
      if (impl.decode(backing.subarray(3, 3 + bytes.length)) !== text) return `decodes a view of ${JSON.stringify(text)} differently`;
    }
    const lone = impl.encode('a\ud800b');
    if (lone.length !== 5 || lone[1] !== 0xef || lone[2] !== 0xbf || lone[3] !== 0xbd) return 'does not encode a lone surrogate as U+FFFD';
    for (const bytes of ILL_FORMED) {
      if (impl.decode(bytes) !== undefined) return `accepts the ill-formed sequence ${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`;
    }
  } catch (err) {
    return `threw ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}

/**
 * Make decodeUtf8/encodeUtf8 use `impl` after checking it on known sequences; a candidate that
 * fails one is refused with an Error and the implementation in use stays. `undefined` goes
 * back to the portable one.
 */
export function useUtf8Implementation(impl: Utf8Implementation | undefined, name = 'custom'): void {
  if (impl === undefined) {
    active = { decode: decodeUtf8Portable, encode: encodeUtf8Portable };
    activeName = 'portable';
    return;
  }
  const wrong = checkCandidate(impl);
  if (wrong !== undefined) throw new InternalError(`UTF-8 implementation ${name} refused: ${wrong}`);
  active = impl;
  activeName = name;
}

/** The portable decoder: `bytes`, or undefined at the first ill-formed sequence. */
export function decodeUtf8Portable(bytes: Uint8Array): string | undefined {
  const units: number[] = [];
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    if (b < 0x80) {
      units.push(b);
      i++;
    } else {
      let need: number;
      let lo = 0x80;
      let hi = 0xbf;
      if (b >= 0xc2 && b <= 0xdf) need = 1;
      else if (b === 0xe0) [need, lo] = [2, 0xa0];
      else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) need = 2;
      else if (b === 0xed) [need, hi] = [2, 0x9f];
      else if (b === 0xf0) [need, lo] = [3, 0x90];
      else if (b >= 0xf1 && b <= 0xf3) need = 3;
      else if (b === 0xf4) [need, hi] = [3, 0x8f];
      else return undefined;
      if (i + need >= bytes.length) return undefined; // the sequence runs past the end
      let cp = b & (0x3f >> need);
      for (let k = 1; k <= need; k++) {
        const c = bytes[i + k] as number;
        if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return undefined;
        cp = (cp << 6) | (c & 0x3f);
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else units.push(cp);
      i += need + 1;
    }
    if (units.length >= 4096) {
      out += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  return out + String.fromCharCode(...units);
}

/** The portable encoder (a lone surrogate becomes U+FFFD). */
export function encodeUtf8Portable(text: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (next - 0xdc00);
        i++;
      }
    }
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return Uint8Array.from(out);
}
