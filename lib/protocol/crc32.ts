// CRC-32 as zlib, gzip, PNG and busybox `crc32` compute it (reflected polynomial 0xEDB88320,
// initial value and final xor 0xFFFFFFFF). Chosen because a busybox guest can compute it with
// its `crc32` applet (busybox has no `cksum` in Debian's static build), so the simplest client
// is a shell script.
//
// Every DATA frame's 64 KiB payload is checksummed twice (the guest encodes, the host
// verifies), so the speed of this function bounds the upload: the slicing-by-4 code below takes
// about a millisecond per frame in a guest under TCG. This core does no I/O and imports no Node
// module, so a faster implementation (Node's native zlib.crc32) is registered by the Node side
// with useCrc32Implementation(), which checks it against known vectors before using it.
import { InternalError } from '../errors.js';

/** A CRC-32 function: the CRC of `bytes`, continuing from `crc` (the result of an earlier call; 0 to start). */
export type Crc32Function = (bytes: Uint8Array, crc: number) => number;

const TABLES: readonly Uint32Array[] = makeTables();

function makeTables(): Uint32Array[] {
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  const tables = [t0];
  for (let s = 1; s < 4; s++) {
    const prev = tables[s - 1] as Uint32Array;
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      const p = prev[n] as number;
      t[n] = ((p >>> 8) ^ (t0[p & 0xff] as number)) >>> 0;
    }
    tables.push(t);
  }
  return tables;
}

/** The portable implementation (slicing-by-4): always available, and the reference a candidate is checked against. */
export function crc32Portable(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~crc >>> 0;
  let i = 0;
  const end4 = bytes.length - (bytes.length % 4);
  for (; i < end4; i += 4) {
    c ^= (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24);
    c = (t3[c & 0xff] as number) ^ (t2[(c >>> 8) & 0xff] as number) ^ (t1[(c >>> 16) & 0xff] as number) ^ (t0[c >>> 24] as number);
  }
  for (; i < bytes.length; i++) c = (t0[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}

let active: Crc32Function = crc32Portable;
let activeName = 'portable';

/** CRC-32 of `bytes`, continuing from `crc` (the result of an earlier call) when given. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  return active(bytes, crc);
}

/** Which implementation crc32() uses: 'portable', or the name given to useCrc32Implementation. */
export function crc32Implementation(): string {
  return activeName;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));

/** Why `fn` is not CRC-32 as this protocol defines it, or undefined when it passes every vector. */
function checkCandidate(fn: Crc32Function): string | undefined {
  const check = ascii('123456789');
  // A longer input with every byte value, an odd length and a non-zero byteOffset: catches
  // implementations wrong only past a block size, on a tail, or on a view into a larger buffer.
  const backing = new Uint8Array(4099);
  for (let i = 0; i < backing.length; i++) backing[i] = (i * 167 + (i >>> 8)) & 0xff;
  const view = backing.subarray(3);
  const cases: { what: string; got: () => unknown; want: number }[] = [
    { what: 'CRC of "123456789"', got: () => fn(check, 0), want: 0xcbf43926 },
    { what: 'CRC of no bytes', got: () => fn(new Uint8Array(0), 0), want: 0 },
    { what: 'CRC of no bytes continuing 0xcbf43926', got: () => fn(new Uint8Array(0), 0xcbf43926), want: 0xcbf43926 },
    // Node's zlib.crc32 returns 0 for this view (no data pointer), whatever the value continued.
    { what: 'CRC of a 0-byte view continuing 0xcbf43926', got: () => fn(new Uint8Array(new ArrayBuffer(0), 0, 0), 0xcbf43926), want: 0xcbf43926 },
    { what: 'CRC of "56789" continuing the CRC of "1234"', got: () => fn(check.subarray(4), fn(check.subarray(0, 4), 0)), want: 0xcbf43926 },
    { what: 'CRC of 4096 bytes at offset 3 of a buffer', got: () => fn(view, 0), want: crc32Portable(view) },
    { what: 'CRC of 4096 bytes continuing 0x12345678', got: () => fn(view, 0x12345678), want: crc32Portable(view, 0x12345678) },
  ];
  for (const c of cases) {
    let got: unknown;
    try {
      got = c.got();
    } catch (err) {
      return `${c.what}: threw ${err instanceof Error ? err.message : String(err)}`;
    }
    if (got !== c.want) return `${c.what}: got ${typeof got === 'number' ? `0x${got.toString(16)}` : String(got)}, want 0x${c.want.toString(16)}`;
  }
  return undefined;
}

/**
 * Make crc32() use `fn` (e.g. Node's zlib.crc32) after checking it against known vectors;
 * a candidate that fails one is refused with an InternalError and the implementation in use
 * stays. `undefined` goes back to the portable implementation.
 */
export function useCrc32Implementation(fn: Crc32Function | undefined, name = 'custom'): void {
  if (fn === undefined) {
    active = crc32Portable;
    activeName = 'portable';
    return;
  }
  const wrong = checkCandidate(fn);
  if (wrong !== undefined) throw new InternalError(`CRC-32 implementation ${name} refused: ${wrong}`);
  active = fn;
  activeName = name;
}
