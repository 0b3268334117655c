// Errors of the QMP client, one class per way a call can fail (after qemu.qmp's error.py):
//
//   QmpError
//   ├── QmpConnectError       connect/greeting/negotiation failed; `cause` says why
//   ├── QmpStateError         the client is not in the state the call needs
//   ├── QmpCapabilityError    a capability (oob) was needed but not offered/negotiated
//   ├── QmpExecuteError       QEMU answered a command with an error
//   ├── QmpTimeoutError       no reply / no event within the time limit
//   ├── QmpDisconnectedError  the session ended while a call or wait was pending
//   └── QmpProtocolError      QEMU sent a JSON object that is not a valid QMP message
//
// Framing violations (oversized line, non-JSON, non-object) are the transport's FrameError;
// they end the session and reach callers as the cause of the QmpDisconnectedError/QmpConnectError.
import { VirtOffloadError, type ErrorCode } from '../errors.js';
import type { Runstate } from './runstate.js';

export abstract class QmpError extends VirtOffloadError {
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
  }
}

/** Connecting failed: socket error, no/bad greeting, refused qmp_capabilities, timeout. */
export class QmpConnectError extends QmpError {
  /** The socket path, or `stream` for an attached stream. */
  readonly target: string;

  constructor(target: string, message: string, cause?: unknown) {
    super('EIO', `cannot connect to QMP at ${target}: ${message}`, cause);
    this.target = target;
  }
}

/** A call that needs another runstate (execute before connect, connect twice…). */
export class QmpStateError extends QmpError {
  readonly state: Runstate;
  readonly required: Runstate;

  constructor(operation: string, state: Runstate, required: Runstate) {
    super('EIO', `QMP ${operation} needs the client to be ${required}, it is ${state}`);
    this.state = state;
    this.required = required;
  }
}

export class QmpCapabilityError extends QmpError {
  readonly capability: string;

  constructor(capability: string, message: string) {
    super('EUNSUPPORTED', message);
    this.capability = capability;
  }
}

/** QEMU answered `{"error": {"class", "desc"}}`. */
export class QmpExecuteError extends QmpError {
  readonly command: string;
  readonly errorClass: string;
  readonly description: string;
  /** The message we sent and the reply we got, as objects (kept out of toJSON). */
  readonly sent: object;
  readonly received: object;

  constructor(sent: { execute?: string; 'exec-oob'?: string }, received: object, errorClass: string, description: string) {
    const command = sent.execute ?? sent['exec-oob'] ?? '?';
    super('EIO', `QMP command ${command} failed: ${errorClass}: ${description}`);
    this.command = command;
    this.errorClass = errorClass;
    this.description = description;
    this.sent = sent;
    this.received = received;
  }
}

export class QmpTimeoutError extends QmpError {
  /** What was waited for: `command query-status`, `event DEVICE_DELETED`, `greeting`. */
  readonly waitingFor: string;
  readonly timeoutMs: number;

  constructor(waitingFor: string, timeoutMs: number) {
    super('EIO', `QMP: no ${waitingFor} within ${timeoutMs} ms`);
    this.waitingFor = waitingFor;
    this.timeoutMs = timeoutMs;
  }
}

/** The session ended before the reply/event came; `cause` is the transport's TransportClosedError. */
export class QmpDisconnectedError extends QmpError {
  readonly waitingFor: string;

  constructor(waitingFor: string, cause: Error) {
    super('EIO', `QMP connection ended while waiting for ${waitingFor}: ${cause.message}`, cause);
    this.waitingFor = waitingFor;
  }
}

/**
 * - bad-greeting: the first message is not a valid greeting
 * - bad-reply: a reply lacks `return`/`error`, has both, or a malformed `error`
 * - bad-event: an event lacks a string name, or its data/timestamp are malformed
 * - no-id: a reply without an id (QEMU could not parse what we sent): cannot be routed
 * - unexpected: a message that is neither reply nor event, or a second greeting
 */
export type QmpProtocolErrorKind = 'bad-greeting' | 'bad-reply' | 'bad-event' | 'no-id' | 'unexpected';

export class QmpProtocolError extends QmpError {
  readonly kind: QmpProtocolErrorKind;
  readonly received: object;

  constructor(kind: QmpProtocolErrorKind, message: string, received: object) {
    super('EMALFORMED', message);
    this.kind = kind;
    this.received = received;
  }
}

/** An event listener's queue filled up because nobody read it; the listener stops. */
export class QmpEventOverflowError extends QmpError {
  readonly limit: number;

  constructor(limit: number) {
    super('EIO', `QMP event listener dropped events: more than ${limit} queued and unread`);
    this.limit = limit;
  }
}
