// Errors of the guest channel protocol. Every guest byte is hostile: anything that is not a
// well-formed frame of a known type, or whose JSON does not match the message's schema
// exactly, is refused with a ProtocolError that names what was wrong and where (stream
// offset of the frame's first byte, frame type, request id), so the daemon can reply to the
// right request and log the facts.
import { VirtOffloadError } from '../errors.js';

/**
 * - too-large: the header announces a payload longer than maxFrame (refused before buffering)
 * - bad-header: flags or reserved bytes are not zero
 * - unknown-type: the type byte is not a message type of this protocol version
 * - wrong-direction: a message type the other side sends (e.g. EXIT from the guest)
 * - bad-id: request id 0 where one is needed, or non-zero on a HELLO
 * - bad-length: a payload length the type does not allow (DATA_END with a payload…)
 * - bad-checksum: the payload does not match its CRC-32 (a frame cut short by a killed sender)
 * - truncated: the stream ended inside a frame
 * - bad-json: not UTF-8, not JSON, too deep, duplicate or forbidden key, not an object
 * - bad-field: a field is missing, unknown, or of the wrong type or shape
 */
export type ProtocolErrorKind =
  | 'too-large'
  | 'bad-header'
  | 'unknown-type'
  | 'wrong-direction'
  | 'bad-id'
  | 'bad-length'
  | 'bad-checksum'
  | 'truncated'
  | 'bad-json'
  | 'bad-field';

export interface ProtocolErrorFacts {
  /** Stream offset of the first byte of the frame (its magic), when known. */
  readonly offset?: number;
  /** The frame's type byte, when the header was read. */
  readonly type?: number;
  /** The frame's request id, when the header was read. */
  readonly requestId?: number;
}

/** The peer sent something that is not a valid frame or message of this protocol. */
export class ProtocolError extends VirtOffloadError {
  readonly kind: ProtocolErrorKind;
  readonly offset: number | undefined;
  readonly type: number | undefined;
  readonly requestId: number | undefined;

  constructor(kind: ProtocolErrorKind, message: string, facts: ProtocolErrorFacts = {}) {
    super('EMALFORMED', message);
    this.kind = kind;
    this.offset = facts.offset;
    this.type = facts.type;
    this.requestId = facts.requestId;
  }
}
