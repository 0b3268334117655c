// The protocol core's CRC-32 and UTF-8, both from the platform where it has them: what the
// guest client and the daemon register at start, in one call so neither is forgotten.
import { useNativeCrc32 } from './native-crc32.js';
import { useNativeUtf8 } from './native-utf8.js';

/** Register the native CRC-32 and UTF-8 codecs with the protocol core; returns the implementations in use. */
export function useNativeCodecs(): { readonly crc32: string; readonly utf8: string } {
  return { crc32: useNativeCrc32(), utf8: useNativeUtf8() };
}
