// The platform's UTF-8 codec for the protocol core (lib/protocol/utf8.ts): every control frame
// is decoded (and, as a self-check, its encoding decoded again), and under QEMU TCG the
// portable JS costs a guest 0.16 ms per frame where TextDecoder costs 0.02. `fatal` makes
// ill-formed input an error (WHATWG's UTF-8 decoder refuses exactly what the Unicode
// well-formed table does); `ignoreBOM` keeps a leading U+FEFF, so the JSON reader still sees
// (and refuses) it. Where the core refuses the candidate, the portable code stays.
import { useUtf8Implementation, utf8Implementation } from '../protocol/index.js';

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Register TextDecoder/TextEncoder with the protocol core (the guest client and the daemon do, at start); returns the implementation in use. */
export function useNativeUtf8(): string {
  if (utf8Implementation() !== 'textdecoder') {
    try {
      useUtf8Implementation(
        {
          decode(bytes) {
            try {
              return decoder.decode(bytes);
            } catch {
              return undefined;
            }
          },
          encode: (text) => encoder.encode(text),
        },
        'textdecoder',
      );
    } catch {
      // Refused (it disagreed on a known sequence): the portable implementation stays.
    }
  }
  return utf8Implementation();
}
