// Errors of the line-JSON transport. The peer is not trusted: anything it sends that is not
// one JSON object per line, within the size limit, ends the connection with a FrameError
// that says what was wrong. Upper layers (qmp) wrap these as the `cause` of their own errors.
import { VirtOffloadError } from '../errors.js';

/**
 * - too-large: a line grew past the limit before its newline arrived
 * - not-utf8: a line is not valid UTF-8
 * - not-json: a line is not JSON
 * - not-object: a line is JSON but not an object (array, string, number, null…)
 */
export type FrameErrorKind = 'too-large' | 'not-utf8' | 'not-json' | 'not-object';

/** The peer sent a line that is not one JSON object within the size limit. */
export class FrameError extends VirtOffloadError {
  readonly kind: FrameErrorKind;
  /** Bytes of the offending line (for too-large: bytes seen so far, more than `limit`). */
  readonly length: number;
  readonly limit: number | undefined;

  constructor(kind: FrameErrorKind, message: string, facts: { length: number; limit?: number }) {
    super('EMALFORMED', message);
    this.kind = kind;
    this.length = facts.length;
    this.limit = facts.limit;
  }
}

/**
 * Why a connection ended:
 * - eof: the peer closed its end
 * - error: the socket failed (cause: the system error)
 * - protocol: the peer broke the protocol (cause: a FrameError or the upper layer's error)
 * - local: we closed it (disconnect, or a timeout the upper layer chose to end the session on)
 */
export type CloseReason = 'eof' | 'error' | 'protocol' | 'local';

/** The connection is closed; pending requests are rejected with this. */
export class TransportClosedError extends VirtOffloadError {
  readonly reason: CloseReason;
  /** The connection's name, e.g. `qmp /run/vm1.qmp`. */
  readonly peer: string;

  constructor(peer: string, reason: CloseReason, message: string, cause?: unknown) {
    super('EIO', message, cause === undefined ? undefined : { cause });
    this.peer = peer;
    this.reason = reason;
  }
}

/** A request got no reply within its time limit. The connection stays open. */
export class TransportTimeoutError extends VirtOffloadError {
  readonly peer: string;
  readonly id: string;
  readonly timeoutMs: number;

  constructor(peer: string, id: string, timeoutMs: number) {
    super('EIO', `${peer}: no reply to request ${id} within ${timeoutMs} ms`);
    this.peer = peer;
    this.id = id;
    this.timeoutMs = timeoutMs;
  }
}
