// The host's view of one guest connection, as a pure state machine: the daemon feeds it the
// decoder's events and gets back actions (send this message, start/feed/run/abort this
// request); the daemon does the I/O. It enforces the rules of docs/protocol.md, "Requests":
//
//   connection: awaiting-hello --HELLO--> ready; every guest HELLO starts a new session and
//               aborts the requests of the previous one (their client is gone), unless it
//               resumes the current session (`resume`: the same client's retry).
//   request:    REQUEST(upload=N) --> uploading --DATA*--> (N bytes) --DATA_END--> running
//               REQUEST(measurement)  -----------------------------------------> running
//               running --(daemon: STDOUT/STDERR*, then EXIT | DENIED | ERROR)--> done
//   Every accepted REQUEST gets exactly one final reply (EXIT, DENIED or ERROR).
//
// Refusals reply ERROR with a code (docs/protocol.md lists them). DATA, DATA_END and CANCEL
// for a request id that is not live are dropped without a reply: after the host ends a
// request early (too large, cancelled…) the guest may still have frames of it in flight.
import { InternalError } from '../errors.js';
import type { ProtocolError } from './errors.js';
import {
  argBytes,
  type Denial,
  encodeHello,
  type ErrorReport,
  type ExitReport,
  type Message,
  PROTOCOL_VERSIONS,
  type ProtocolLimits,
  type RunRequest,
} from './messages.js';
import { clipText } from '../text.js';

/** Codes of ERROR replies the host sends (clients treat unknown codes as a generic failure). */
export const ERROR_CODES = Object.freeze({
  /** A frame was refused (bad JSON, bad field, bad checksum, oversized…). */
  malformed: 'malformed',
  /** No common protocol version in the guest's HELLO. */
  version: 'version',
  /** A REQUEST before the guest's HELLO. */
  noHello: 'no-hello',
  /** A REQUEST naming (`session`) a guest HELLO other than the one the current session began with. */
  staleSession: 'stale-session',
  /** A REQUEST with the id of a request still in flight; both are ended. */
  duplicateId: 'duplicate-id',
  /** maxConcurrent requests are in flight already, or the host's rate or upload budget is used up. */
  busy: 'busy',
  /** argv/env over maxArgs or maxArgBytes. */
  limit: 'limit',
  /** An announced upload over maxUpload. */
  tooLarge: 'too-large',
  /** The upload's DATA bytes do not add up to the announced size. */
  uploadSize: 'upload-size',
  /** DATA or DATA_END after the upload ended. */
  outOfOrder: 'out-of-order',
  /** The guest sent CANCEL. */
  cancelled: 'cancelled',
  /** For the daemon's timers (frameTimeoutMs, uploadTimeoutMs): send with finish(ticket, ERROR). */
  timeout: 'timeout',
} as const);

export type HostAction =
  /** Encode (encodeMessage with limits.maxFrame) and send. */
  | { readonly type: 'send'; readonly message: Message }
  /** A REQUEST was accepted: prepare (e.g. start hashing); `ticket` names it from now on. */
  | { readonly type: 'begin'; readonly ticket: number; readonly requestId: number; readonly request: RunRequest }
  /** The next chunk of the request's upload. */
  | { readonly type: 'data'; readonly ticket: number; readonly requestId: number; readonly chunk: Uint8Array }
  /** Upload complete (or nothing to upload): measure, decide, run; then call output()/finish(). */
  | { readonly type: 'run'; readonly ticket: number; readonly requestId: number }
  /** Stop all work for the request and discard its upload; its final reply is already sent. */
  | { readonly type: 'abort'; readonly ticket: number; readonly requestId: number; readonly reason: string }
  /**
   * A new guest session began (the guest's HELLO); `aborted` requests of the old one were
   * ended. `resumed`: the guest's HELLO resumed the current session, whose requests go on.
   */
  | { readonly type: 'reset'; readonly aborted: number; readonly resumed: boolean }
  | { readonly type: 'pong'; readonly requestId: number; readonly data: Uint8Array }
  /** A frame dropped without a reply (for counters and debug logs). */
  | { readonly type: 'ignored'; readonly requestId: number; readonly frame: string; readonly reason: string };

type RequestState =
  | { phase: 'uploading'; readonly ticket: number; readonly announced: number; received: number }
  | { phase: 'running'; readonly ticket: number };

export interface HostSessionOptions {
  readonly limits: ProtocolLimits;
  /** Sent in the host's HELLO, e.g. "virt-offload/0.1.0". */
  readonly software?: string;
  /**
   * The daemon's last word on a REQUEST that passed every check of the protocol: a reason to
   * refuse it with ERROR busy (a rate, a budget shared by all VMs), or undefined to admit it.
   * Called once per request, right before it is in flight.
   */
  readonly admit?: (request: RunRequest) => string | undefined;
}

export class HostSession {
  readonly limits: ProtocolLimits;
  readonly #software: string | undefined;
  readonly #admit: ((request: RunRequest) => string | undefined) | undefined;
  #ready = false;
  /** The nonce of the guest HELLO the current session began (or was resumed) with. */
  #nonce: string | undefined;
  #nextTicket = 1;
  readonly #requests = new Map<number, RequestState>();
  /** ticket → request id, for the daemon's calls. */
  readonly #tickets = new Map<number, number>();

  constructor(options: HostSessionOptions) {
    // Encoding a HELLO checks every limit against its bounds (a bad configuration fails here, not at the first guest).
    encodeHello({ role: 'host', version: 1, nonce: 'checking', limits: options.limits });
    this.limits = options.limits;
    this.#software = options.software;
    this.#admit = options.admit;
  }

  /** True once a guest HELLO was answered. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Requests in flight (uploading or running). */
  get inFlight(): number {
    return this.#requests.size;
  }

  /** Handle one decoded message from the guest. */
  onMessage(message: Message): HostAction[] {
    switch (message.type) {
      case 'HELLO': return this.#hello(message.body);
      case 'PING': return [send({ type: 'PONG', requestId: message.requestId, data: message.data })];
      case 'PONG': return [{ type: 'pong', requestId: message.requestId, data: message.data }];
      case 'REQUEST': return this.#request(message.requestId, message.body);
      case 'DATA': return this.#data(message.requestId, message.data);
      case 'DATA_END': return this.#dataEnd(message.requestId);
      case 'CANCEL': {
        const state = this.#requests.get(message.requestId);
        if (state === undefined) return [ignored(message.requestId, 'CANCEL', 'no such request in flight')];
        return this.#fail(message.requestId, state, ERROR_CODES.cancelled, `request ${message.requestId} cancelled by the guest`);
      }
      default:
        // The decoder refuses host-only types from the guest; reaching this is a wiring bug.
        throw new InternalError(`host session given a ${message.type} message, which only the host sends`);
    }
  }

  /**
   * Handle a decoder refusal: a live request it names fails with ERROR 'malformed'; otherwise
   * the guest is told with an ERROR on the frame's request id (0 when unknown).
   */
  onError(error: ProtocolError): HostAction[] {
    const id = error.requestId ?? 0;
    const state = id === 0 ? undefined : this.#requests.get(id);
    if (state !== undefined) return this.#fail(id, state, ERROR_CODES.malformed, error.message);
    return [sendError(id, ERROR_CODES.malformed, error.message)];
  }

  /** Output of a running request, as STDOUT/STDERR messages of at most maxFrame bytes; [] when the ticket is no longer live. */
  output(ticket: number, stream: 'STDOUT' | 'STDERR', bytes: Uint8Array): Message[] {
    const live = this.#live(ticket);
    if (live === undefined) return [];
    if (live.state.phase !== 'running') throw new InternalError(`output for request ${live.id} before its upload ended`);
    const out: Message[] = [];
    for (let at = 0; at < bytes.length; at += this.limits.maxFrame) {
      out.push({ type: stream, requestId: live.id, data: bytes.subarray(at, at + this.limits.maxFrame) });
    }
    return out;
  }

  /**
   * The request's final reply. EXIT and DENIED only after `run`; ERROR at any time (the daemon's
   * own failures, timeouts). Returns [] when the ticket is no longer live (aborted meanwhile).
   */
  finish(ticket: number, reply: { type: 'EXIT'; body: ExitReport } | { type: 'DENIED'; body: Denial } | { type: 'ERROR'; body: ErrorReport }): Message[] {
    const live = this.#live(ticket);
    if (live === undefined) return [];
    if (reply.type !== 'ERROR' && live.state.phase !== 'running') throw new InternalError(`${reply.type} for request ${live.id} before its upload ended`);
    this.#remove(live.id, ticket);
    return [{ ...reply, requestId: live.id } as Message];
  }

  #live(ticket: number): { id: number; state: RequestState } | undefined {
    const id = this.#tickets.get(ticket);
    if (id === undefined) return undefined;
    const state = this.#requests.get(id);
    if (state === undefined || state.ticket !== ticket) throw new InternalError(`ticket ${ticket} lost its request`);
    return { id, state };
  }

  #hello(body: Extract<Message, { type: 'HELLO' }>['body']): HostAction[] {
    if (body.role !== 'guest') return [sendError(0, ERROR_CODES.malformed, 'HELLO from the guest must have role "guest"')];
    const common = body.versions.filter((v) => PROTOCOL_VERSIONS.includes(v));
    if (common.length === 0) {
      return [sendError(0, ERROR_CODES.version, `no common protocol version: guest speaks ${body.versions.join(', ')}, host speaks ${PROTOCOL_VERSIONS.join(', ')}`)];
    }
    const actions: HostAction[] = [];
    // Resumed: the same client's retry (its first HELLO was answered after all, and the
    // request sent behind it is in flight). Anything else is a new client: the old one's
    // requests are ended.
    const resumed = body.resume !== undefined && this.#ready && body.resume === this.#nonce;
    const aborted = resumed ? 0 : this.#requests.size;
    if (!resumed) {
      for (const [id, state] of this.#requests) actions.push({ type: 'abort', ticket: state.ticket, requestId: id, reason: 'the guest started a new session (HELLO)' });
      this.#requests.clear();
      this.#tickets.clear();
    }
    this.#ready = true;
    this.#nonce = body.nonce;
    actions.push({ type: 'reset', aborted, resumed });
    const hello = {
      role: 'host' as const,
      version: Math.max(...common),
      nonce: body.nonce,
      limits: this.limits,
      ...(body.resume === undefined ? {} : { resumed }),
      ...(this.#software === undefined ? {} : { software: this.#software }),
    };
    actions.push(send({ type: 'HELLO', requestId: 0, body: hello }));
    return actions;
  }

  #request(id: number, request: RunRequest): HostAction[] {
    if (!this.#ready) return [sendError(id, ERROR_CODES.noHello, 'REQUEST before HELLO: send HELLO first')];
    if (request.session !== undefined && request.session !== this.#nonce) {
      return [sendError(id, ERROR_CODES.staleSession, `REQUEST of session ${request.session}, but the current session began with HELLO ${this.#nonce ?? '(none)'}`)];
    }
    const existing = this.#requests.get(id);
    if (existing !== undefined) return this.#fail(id, existing, ERROR_CODES.duplicateId, `request id ${id} is already in flight; both requests are ended`);
    const l = this.limits;
    if (this.#requests.size >= l.maxConcurrent) return [sendError(id, ERROR_CODES.busy, `${this.#requests.size} requests in flight; the host allows ${l.maxConcurrent}`)];
    if (request.argv.length > l.maxArgs) return [sendError(id, ERROR_CODES.limit, `${request.argv.length} arguments; the host allows ${l.maxArgs}`)];
    const bytes = argBytes(request);
    if (bytes > l.maxArgBytes) return [sendError(id, ERROR_CODES.limit, `arguments and environment take ${bytes} bytes; the host allows ${l.maxArgBytes}`)];
    if (request.upload !== undefined && request.upload > l.maxUpload) {
      return [sendError(id, ERROR_CODES.tooLarge, `upload of ${request.upload} bytes; the host allows ${l.maxUpload}`)];
    }
    const refusal = this.#admit?.(request);
    if (refusal !== undefined) return [sendError(id, ERROR_CODES.busy, refusal)];
    const ticket = this.#nextTicket++;
    this.#tickets.set(ticket, id);
    const begin: HostAction = { type: 'begin', ticket, requestId: id, request };
    if (request.upload === undefined) {
      this.#requests.set(id, { phase: 'running', ticket });
      return [begin, { type: 'run', ticket, requestId: id }];
    }
    this.#requests.set(id, { phase: 'uploading', ticket, announced: request.upload, received: 0 });
    return [begin];
  }

  #data(id: number, chunk: Uint8Array): HostAction[] {
    const state = this.#requests.get(id);
    if (state === undefined) return [ignored(id, 'DATA', 'no such request in flight')];
    if (state.phase !== 'uploading') return this.#fail(id, state, ERROR_CODES.outOfOrder, `DATA for request ${id} after its upload ended`);
    if (state.received + chunk.length > state.announced) {
      return this.#fail(id, state, ERROR_CODES.uploadSize, `upload of request ${id} exceeds the announced ${state.announced} bytes (${state.received + chunk.length} sent)`);
    }
    state.received += chunk.length;
    return [{ type: 'data', ticket: state.ticket, requestId: id, chunk }];
  }

  #dataEnd(id: number): HostAction[] {
    const state = this.#requests.get(id);
    if (state === undefined) return [ignored(id, 'DATA_END', 'no such request in flight')];
    if (state.phase !== 'uploading') return this.#fail(id, state, ERROR_CODES.outOfOrder, `DATA_END for request ${id} after its upload ended`);
    if (state.received !== state.announced) {
      return this.#fail(id, state, ERROR_CODES.uploadSize, `upload of request ${id} ended after ${state.received} of the announced ${state.announced} bytes`);
    }
    this.#requests.set(id, { phase: 'running', ticket: state.ticket });
    return [{ type: 'run', ticket: state.ticket, requestId: id }];
  }

  /** End a live request: the daemon aborts its work, the guest gets its one final reply. */
  #fail(id: number, state: RequestState, code: string, reason: string): HostAction[] {
    this.#remove(id, state.ticket);
    return [{ type: 'abort', ticket: state.ticket, requestId: id, reason }, sendError(id, code, reason)];
  }

  #remove(id: number, ticket: number): void {
    this.#requests.delete(id);
    this.#tickets.delete(ticket);
  }
}

function send(message: Message): HostAction {
  return { type: 'send', message };
}

function sendError(requestId: number, code: string, message: string): HostAction {
  // ERROR messages are capped at 4096 characters by the message rules; they may quote a guest's text.
  return send({ type: 'ERROR', requestId, body: { code, message: clipText(message, 4096) } });
}

function ignored(requestId: number, frame: string, reason: string): HostAction {
  return { type: 'ignored', requestId, frame, reason };
}
