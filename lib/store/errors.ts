// Errors of the install store. Each names the store path and the measurement involved, so an
// operator can find the file, and carries a `kind` scripts can switch on.
import { VirtOffloadError, type ErrorCode } from '../errors.js';

/**
 * - unsafe: a store directory is a symlink, group/world-writable, or owned by someone else
 * - missing: the store (or an installed object) does not exist
 * - mismatch: the bytes offered for install do not measure to the expected measurement
 * - corrupt: an installed object or manifest no longer matches its name (tampered, damaged)
 * - bad-measurement: a measurement string that is not `<algo>:<hex>` with a known algorithm
 * - invalid: a name or version that cannot be recorded (empty, too long, control characters)
 */
export type StoreErrorKind = 'unsafe' | 'missing' | 'mismatch' | 'corrupt' | 'bad-measurement' | 'invalid';

const CODES: Record<StoreErrorKind, ErrorCode> = {
  unsafe: 'EIO',
  missing: 'EIO',
  mismatch: 'EMALFORMED',
  corrupt: 'EIO',
  'bad-measurement': 'EMALFORMED',
  invalid: 'EMALFORMED',
};

export class StoreError extends VirtOffloadError {
  readonly kind: StoreErrorKind;
  readonly path: string | undefined;
  readonly measurement: string | undefined;
  /** For mismatch/corrupt: what the bytes actually measure (or hash) to. */
  readonly actual: string | undefined;

  constructor(kind: StoreErrorKind, message: string, facts: { path?: string; measurement?: string; actual?: string } = {}) {
    super(CODES[kind], message);
    this.kind = kind;
    this.path = facts.path;
    this.measurement = facts.measurement;
    this.actual = facts.actual;
  }
}
