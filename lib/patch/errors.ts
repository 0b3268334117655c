// Errors of the patch module. A delta is hostile input like a binary: every refusal names the
// structure, the offset in the delta file and the facts, so the user can tell a truncated
// download from an xdelta3 option that was left out.
import { VirtOffloadError, hex } from '../errors.js';

/**
 * A VCDIFF delta that cannot be applied. code 'EMALFORMED': truncated, inconsistent or out of
 * range; 'EUNSUPPORTED': well-formed, but uses a feature the decoder does not implement
 * (secondary compression, application header, custom code table, adler32 checksum, VCD_TARGET).
 * `offset` is the byte offset in the delta where the problem was found.
 */
export class PatchError extends VirtOffloadError {
  readonly offset: number | undefined;

  constructor(code: 'EMALFORMED' | 'EUNSUPPORTED', message: string, offset?: number) {
    super(code, offset === undefined ? `VCDIFF: ${message}` : `VCDIFF: ${message} (at delta offset ${hex(offset)})`);
    this.offset = offset;
  }
}
