// Node's native CRC-32 for the protocol core (lib/protocol/crc32.ts): the daemon verifies the
// payload CRC of every frame a guest sends, 64 KiB per DATA frame of an upload, and the
// portable JS code is several times slower than zlib.crc32 (Node 20.15 and 22.2 on). Where
// it is missing, or the core refuses it (a wrong result on a known vector), the portable one stays.
import * as zlib from 'node:zlib';
import { crc32Implementation, useCrc32Implementation } from '../protocol/index.js';

let tried = false;

/** Register zlib.crc32 with the protocol core once; returns the implementation in use. */
export function useNativeCrc32(): string {
  if (!tried) {
    tried = true;
    const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
    if (typeof native === 'function') {
      try {
        // No bytes: the value continued, as is (zlib.crc32 returns 0 for some empty views).
        useCrc32Implementation((bytes, crc) => (bytes.length === 0 ? crc >>> 0 : native(bytes, crc)), 'zlib');
      } catch {
        // Refused: the portable implementation stays.
      }
    }
  }
  return crc32Implementation();
}
