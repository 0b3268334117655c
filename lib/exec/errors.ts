// Errors of the exec helper. Each refusal happens before anything runs and says why, so the
// daemon can answer the guest and write the audit record with the facts.
import { VirtOffloadError, type ErrorCode } from '../errors.js';

/**
 * - tampered: the installed file no longer measures to the measurement it was installed under
 *   (or is not the canonical image any more); nothing was started
 * - not-runnable: the format/interpreter pair cannot be run (an ELF with a script interpreter,
 *   a script without one, a PE, an ELF whose PT_INTERP lies outside the system library dirs)
 * - bad-request: argv or env break the limits or the rules (too many/long, NUL, LD_* names)
 * - no-sandbox: bubblewrap or the cgroup controllers are missing or do not work, and no
 *   unsandboxed profile was named
 * - sandbox-failed: bubblewrap started but could not build the sandbox (its stderr is in the message)
 * - cgroup: a per-run cgroup could not be created, limited, joined or removed
 * - too-large: the installed file is larger than the helper copies into a sandbox
 * - leaky-fd: this process holds an fd without close-on-exec that the program would inherit
 */
export type ExecErrorKind = 'tampered' | 'not-runnable' | 'bad-request' | 'no-sandbox' | 'sandbox-failed' | 'cgroup' | 'too-large' | 'leaky-fd';

const CODES: Record<ExecErrorKind, ErrorCode> = {
  tampered: 'EIO',
  'not-runnable': 'EUNSUPPORTED',
  'bad-request': 'EUSAGE',
  'no-sandbox': 'EUNSUPPORTED',
  'sandbox-failed': 'EIO',
  cgroup: 'EIO',
  'too-large': 'EUNSUPPORTED',
  'leaky-fd': 'EIO',
};

export class ExecError extends VirtOffloadError {
  readonly kind: ExecErrorKind;
  readonly path: string | undefined;
  readonly measurement: string | undefined;
  /** For tampered: what the file measures to now. */
  readonly actual: string | undefined;

  constructor(kind: ExecErrorKind, message: string, facts: { path?: string; measurement?: string; actual?: string; cause?: unknown } = {}) {
    super(CODES[kind], message, facts.cause === undefined ? undefined : { cause: facts.cause });
    this.kind = kind;
    this.path = facts.path;
    this.measurement = facts.measurement;
    this.actual = facts.actual;
  }
}
