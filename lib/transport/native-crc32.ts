// Node's native CRC-32 for the protocol core (lib/protocol/crc32.ts): every DATA frame of an
// upload is checksummed once per 64 KiB, and under TCG the portable JS code costs about a
// millisecond per frame, several times the native one. zlib.crc32 exists from Node 20.15 and
// 22.2; where it is missing (or the core refuses it) the portable implementation stays.
import * as zlib from 'node:zlib';
import { crc32Implementation, useCrc32Implementation } from '../protocol/index.js';

/** Register zlib.crc32 with the protocol core (the guest client and the daemon do, at start); returns the implementation in use. */
export function useNativeCrc32(): string {
  // Checked each time rather than once per process: a test (or a caller) may have put the
  // portable one back, and registering runs the core's vector checks (microseconds).
  if (crc32Implementation() !== 'zlib') {
    const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
    if (typeof native === 'function') {
      try {
        // No bytes: the value continued, as is (zlib.crc32 returns 0 for some empty views).
        useCrc32Implementation((bytes, crc) => (bytes.length === 0 ? crc >>> 0 : native(bytes, crc)), 'zlib');
      } catch {
        // Refused (a wrong result on a known vector): the portable implementation stays.
      }
    }
  }
  return crc32Implementation();
}
