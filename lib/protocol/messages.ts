// Message types of protocol version 1: what each frame type carries and the exact rules its
// payload must meet (docs/protocol.md, "Messages"). Validation happens here, at the
// boundary, for both directions: decoded frames become typed, frozen messages or a
// ProtocolError, and the encoders run the same checks, so whatever we send the peer accepts.
//
// Unknown JSON members are refused in every message except HELLO: a version-1 peer that
// sends a member version 1 does not define is broken or probing, and silently ignoring a
// member the sender believes takes effect would mislead it. HELLO ignores unknown members
// (at every level) so that peers of different versions can still agree on one.
import { ProtocolError, type ProtocolErrorFacts } from './errors.js';
import {
  DEFAULT_MAX_FRAME,
  encodeFrame,
  type Frame,
  FRAME_FLAG,
  FrameType,
  type FrameTypeName,
  HEADER_BYTES,
  MAX_FRAME_CEILING,
  MAX_PING_BYTES,
  MIN_FRAME,
  RESYNC_BYTE,
  RESYNC_BYTES,
  sealFrame,
  typeName,
} from './frame.js';
import { type JsonObject, type JsonValue, parseJsonObject } from './json.js';
import { encodeUtf8 } from './utf8.js';
import { MEASUREMENT_PATTERN } from '../measure/pure.js';
import { clipText } from '../text.js';

/** The message-level protocol versions this implementation speaks. */
export const PROTOCOL_VERSIONS: readonly number[] = Object.freeze([1]);

/** Shapes of names and tokens; anchored and bounded, so a value is exactly right or refused. */
export const NONCE = /^[A-Za-z0-9_-]{8,64}$/;
export const MEASUREMENT = MEASUREMENT_PATTERN;
export const BINARY_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
export const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
export const CODE = /^[a-z][a-z0-9-]{0,63}$/;
export const SIGNAL = /^SIG[A-Z0-9]{1,12}$/;
const SOFTWARE = /^[\x20-\x7e]{1,128}$/;
const MAX_TEXT = 4096;
/** Hard caps that hold whatever a host announces (argv entries, versions offered). */
export const MAX_ARGS_CEILING = 65536;
const MAX_VERSIONS = 16;

/** What the host announces in its HELLO; the guest must stay within it. */
export interface ProtocolLimits {
  /** Largest payload of one frame, in bytes (MIN_FRAME..MAX_FRAME_CEILING). */
  readonly maxFrame: number;
  /** Largest binary a REQUEST may announce for upload, in bytes. */
  readonly maxUpload: number;
  /** Most argv entries in one REQUEST. */
  readonly maxArgs: number;
  /** Most bytes of argv and env in one REQUEST (each argument + 1, each NAME=VALUE + 2, UTF-8). */
  readonly maxArgBytes: number;
  /** Most requests in flight on one connection. */
  readonly maxConcurrent: number;
  /** A frame the host has started to receive must be complete within this many ms. */
  readonly frameTimeoutMs: number;
  /** From REQUEST to DATA_END at most this many ms. */
  readonly uploadTimeoutMs: number;
}

const LIMIT_BOUNDS: Readonly<Record<keyof ProtocolLimits, readonly [number, number]>> = Object.freeze({
  maxFrame: [MIN_FRAME, MAX_FRAME_CEILING],
  maxUpload: [0, Number.MAX_SAFE_INTEGER],
  maxArgs: [0, MAX_ARGS_CEILING],
  maxArgBytes: [0, Number.MAX_SAFE_INTEGER],
  maxConcurrent: [1, 1024],
  frameTimeoutMs: [1, 86_400_000],
  uploadTimeoutMs: [1, 86_400_000],
});
export const LIMIT_NAMES: readonly (keyof ProtocolLimits)[] = Object.freeze(Object.keys(LIMIT_BOUNDS) as (keyof ProtocolLimits)[]);

export interface GuestHello {
  readonly role: 'guest';
  /** Message-level versions the guest speaks. */
  readonly versions: readonly number[];
  /** Chosen afresh for each HELLO; the host echoes it, so the guest knows which reply is current. */
  readonly nonce: string;
  /**
   * The nonce of this client's earlier HELLO whose session is to go on: if it is the host's
   * current session, its requests in flight are kept (a retry after a slow answer must not
   * end the request sent with the first HELLO). Otherwise the new session starts as usual.
   */
  readonly resume?: string;
  readonly software?: string;
}

export interface HostHello {
  readonly role: 'host';
  /** The version chosen for this connection: the highest both speak. */
  readonly version: number;
  readonly nonce: string;
  readonly limits: ProtocolLimits;
  /** Answers a guest HELLO with `resume`: whether the requests of that session went on. */
  readonly resumed?: boolean;
  readonly software?: string;
}

export interface RunRequest {
  /** Arguments after the program name (the host chooses argv[0]). */
  readonly argv: readonly string[];
  /** Extra environment; null-prototype object. */
  readonly env: Readonly<Record<string, string>>;
  /** What the guest calls the binary: informational, the policy matches on the measurement. */
  readonly name?: string;
  /** Bytes of the binary that follow in DATA frames. Exactly one of upload and measurement. */
  readonly upload?: number;
  /** Run an installed binary by measurement, without upload (`submit --measurement`). */
  readonly measurement?: string;
  /**
   * The nonce of the guest HELLO this request belongs to. A request sent right behind its
   * HELLO, before the answer, names it: the host refuses it in any other session (a HELLO
   * swallowed by a dead client's frame must not leave its request to run in that session).
   */
  readonly session?: string;
}

export interface LimitsHit {
  readonly wall: boolean;
  readonly memory: boolean;
  readonly pids: boolean;
  readonly output: boolean;
}

export interface ExitReport {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly durationMs: number;
  readonly limitsHit: LimitsHit;
  readonly measurement: string;
  readonly name: string;
  readonly version: string;
}

export interface Denial {
  readonly measurement: string;
  readonly code: string;
  readonly reason: string;
}

export interface ErrorReport {
  readonly code: string;
  readonly message: string;
}

export type Message =
  | { readonly type: 'HELLO'; readonly requestId: number; readonly body: GuestHello | HostHello }
  | { readonly type: 'PING' | 'PONG'; readonly requestId: number; readonly data: Uint8Array }
  | { readonly type: 'REQUEST'; readonly requestId: number; readonly body: RunRequest }
  | { readonly type: 'DATA' | 'STDOUT' | 'STDERR'; readonly requestId: number; readonly data: Uint8Array }
  | { readonly type: 'DATA_END' | 'CANCEL'; readonly requestId: number }
  | { readonly type: 'EXIT'; readonly requestId: number; readonly body: ExitReport }
  | { readonly type: 'DENIED'; readonly requestId: number; readonly body: Denial }
  | { readonly type: 'ERROR'; readonly requestId: number; readonly body: ErrorReport };

export type MessageType = Message['type'];

// ---------------------------------------------------------------------------------------------
// Field checks. `Fields` reads one JSON object; in strict mode, finish() refuses members that
// were never asked for.

class Fields {
  readonly #object: JsonObject;
  readonly #what: string;
  readonly #facts: ProtocolErrorFacts;
  readonly #used = new Set<string>();

  constructor(object: JsonObject, what: string, facts: ProtocolErrorFacts) {
    this.#object = object;
    this.#what = what;
    this.#facts = facts;
  }

  fail(why: string): ProtocolError {
    return new ProtocolError('bad-field', `${this.#what}: ${why}`, this.#facts);
  }

  has(key: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.#object, key);
  }

  get(key: string): JsonValue | undefined {
    this.#used.add(key);
    return this.has(key) ? this.#object[key] : undefined;
  }

  required(key: string): JsonValue {
    const value = this.get(key);
    if (value === undefined) throw this.fail(`"${key}" is missing`);
    return value;
  }

  string(key: string, shape: RegExp | undefined, optional: true): string | undefined;
  string(key: string, shape?: RegExp): string;
  string(key: string, shape?: RegExp, optional = false): string | undefined {
    const value = optional ? this.get(key) : this.required(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw this.fail(`"${key}" is not a string`);
    if (shape !== undefined && !shape.test(value)) throw this.fail(`"${key}" ${printable(value)} does not match ${shape.source}`);
    if (shape === undefined && value.length > MAX_TEXT) throw this.fail(`"${key}" is longer than ${MAX_TEXT} characters`);
    return value;
  }

  integer(key: string, min: number, max: number, optional: true): number | undefined;
  integer(key: string, min: number, max: number): number;
  integer(key: string, min: number, max: number, optional = false): number | undefined {
    const value = optional ? this.get(key) : this.required(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw this.fail(`"${key}" must be an integer from ${min} to ${max}, got ${printable(value)}`);
    }
    return value;
  }

  boolean(key: string): boolean {
    const value = this.required(key);
    if (typeof value !== 'boolean') throw this.fail(`"${key}" is not true or false`);
    return value;
  }

  object(key: string, optional = false): JsonObject | undefined {
    const value = optional ? this.get(key) : this.required(key);
    if (value === undefined) return undefined;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw this.fail(`"${key}" is not an object`);
    return value;
  }

  nested(key: string, optional = false): Fields | undefined {
    const object = this.object(key, optional);
    return object === undefined ? undefined : new Fields(object, `${this.#what} "${key}"`, this.#facts);
  }

  /** Strict messages: every member must have been read. */
  finish(): void {
    for (const key of Object.keys(this.#object)) {
      if (!this.#used.has(key)) throw this.fail(`unknown member ${printable(key)}`);
    }
  }
}

function printable(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value));
  return clipText(text, 80, '...');
}

/** UTF-8 length of a string without TextEncoder allocation (the JSON reader refused lone surrogates). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Bytes argv and env take as the exec layer counts them: each argument + 1, each NAME=VALUE + 2. */
export function argBytes(request: RunRequest): number {
  let bytes = 0;
  for (const a of request.argv) bytes += utf8Length(a) + 1;
  for (const [name, value] of Object.entries(request.env)) bytes += utf8Length(name) + utf8Length(value) + 2;
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Per-type body readers.

function readHello(f: Fields): GuestHello | HostHello {
  const role = f.string('role');
  const nonce = f.string('nonce', NONCE);
  const software = f.string('software', SOFTWARE, true);
  const extra = software === undefined ? {} : { software };
  if (role === 'guest') {
    const list = f.required('versions');
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_VERSIONS) throw f.fail(`"versions" must be a list of 1 to ${MAX_VERSIONS} versions`);
    const versions = list.map((v) => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 255) throw f.fail(`"versions" holds ${printable(v)}, not an integer from 1 to 255`);
      return v;
    });
    const resume = f.string('resume', NONCE, true);
    return Object.freeze({ role, versions: Object.freeze(versions), nonce, ...(resume === undefined ? {} : { resume }), ...extra });
  }
  if (role === 'host') {
    const version = f.integer('version', 1, 255);
    const l = f.nested('limits') as Fields;
    const limits = Object.fromEntries(LIMIT_NAMES.map((name) => [name, l.integer(name, ...LIMIT_BOUNDS[name])])) as unknown as ProtocolLimits;
    const resumed = f.has('resumed') ? f.boolean('resumed') : undefined;
    return Object.freeze({ role, version, nonce, limits: Object.freeze(limits), ...(resumed === undefined ? {} : { resumed }), ...extra });
  }
  throw f.fail(`"role" must be "guest" or "host", got ${printable(role)}`);
}

function readRequest(f: Fields): RunRequest {
  const list = f.required('argv');
  if (!Array.isArray(list) || list.length > MAX_ARGS_CEILING) throw f.fail(`"argv" must be a list of at most ${MAX_ARGS_CEILING} strings`);
  const argv = list.map((a, i) => {
    if (typeof a !== 'string') throw f.fail(`argv[${i}] is not a string`);
    if (a.includes('\0')) throw f.fail(`argv[${i}] contains a NUL character`);
    return a;
  });
  const env = Object.create(null) as Record<string, string>;
  const e = f.object('env', true);
  if (e !== undefined) {
    for (const [key, value] of Object.entries(e)) {
      if (!ENV_NAME.test(key)) throw f.fail(`environment name ${printable(key)} does not match ${ENV_NAME.source}`);
      if (typeof value !== 'string' || value.includes('\0')) throw f.fail(`environment value of ${key} is not a string without NUL characters`);
      env[key] = value;
    }
  }
  const name = f.string('name', BINARY_NAME, true);
  const upload = f.integer('upload', 0, Number.MAX_SAFE_INTEGER, true);
  const measurement = f.string('measurement', MEASUREMENT, true);
  if ((upload === undefined) === (measurement === undefined)) throw f.fail('exactly one of "upload" and "measurement" must be given');
  const session = f.string('session', NONCE, true);
  f.finish();
  return Object.freeze({
    argv: Object.freeze(argv),
    env: Object.freeze(env),
    ...(name === undefined ? {} : { name }),
    ...(upload === undefined ? {} : { upload }),
    ...(measurement === undefined ? {} : { measurement }),
    ...(session === undefined ? {} : { session }),
  });
}

function readExit(f: Fields): ExitReport {
  const exitCodeValue = f.required('exitCode');
  const exitCode = exitCodeValue === null ? null : (f.integer('exitCode', 0, 255) as number);
  const signalValue = f.required('signal');
  const signal = signalValue === null ? null : f.string('signal', SIGNAL);
  if (exitCode === null && signal === null) throw f.fail('"exitCode" and "signal" are both null');
  const durationMs = f.integer('durationMs', 0, Number.MAX_SAFE_INTEGER);
  const h = f.nested('limitsHit') as Fields;
  const limitsHit = Object.freeze({ wall: h.boolean('wall'), memory: h.boolean('memory'), pids: h.boolean('pids'), output: h.boolean('output') });
  h.finish();
  const measurement = f.string('measurement', MEASUREMENT);
  const name = f.string('name', BINARY_NAME);
  const version = f.string('version', VERSION);
  f.finish();
  return Object.freeze({ exitCode, signal, durationMs, limitsHit, measurement, name, version });
}

function readDenied(f: Fields): Denial {
  const body = { measurement: f.string('measurement', MEASUREMENT), code: f.string('code', CODE), reason: f.string('reason') };
  f.finish();
  return Object.freeze(body);
}

function readError(f: Fields): ErrorReport {
  const body = { code: f.string('code', CODE), message: f.string('message') };
  f.finish();
  return Object.freeze(body);
}

// ---------------------------------------------------------------------------------------------
// Frame → message.

const JSON_READERS = {
  HELLO: readHello,
  REQUEST: readRequest,
  EXIT: readExit,
  DENIED: readDenied,
  ERROR: readError,
} as const;

/** Types that carry no payload. */
const EMPTY: ReadonlySet<FrameTypeName> = new Set(['DATA_END', 'CANCEL']);
/** Types whose request id is 0 (HELLO) or any value (PING, PONG, ERROR); all others need a non-zero id. */
const ID_ZERO: ReadonlySet<FrameTypeName> = new Set(['HELLO']);
const ID_ANY: ReadonlySet<FrameTypeName> = new Set(['PING', 'PONG', 'ERROR']);

/**
 * Interpret a frame whose header the decoder has accepted (known type, right direction,
 * length within maxFrame). Throws ProtocolError for a payload or request id the type does not allow.
 */
export function parseFrame(frame: Frame): Message {
  const name = typeName(frame.type) as FrameTypeName;
  const facts: ProtocolErrorFacts = { offset: frame.offset, type: frame.type, requestId: frame.requestId };
  const { requestId, payload } = frame;
  if (ID_ZERO.has(name) ? requestId !== 0 : !ID_ANY.has(name) && requestId === 0) {
    throw new ProtocolError('bad-id', `${name} frame with request id ${requestId} (it must be ${ID_ZERO.has(name) ? '0' : 'non-zero'})`, facts);
  }
  if (EMPTY.has(name)) {
    if (payload.length !== 0) throw new ProtocolError('bad-length', `${name} frame with a ${payload.length}-byte payload (it must be empty)`, facts);
    return Object.freeze({ type: name as 'DATA_END' | 'CANCEL', requestId });
  }
  if (name === 'PING' || name === 'PONG') {
    if (payload.length > MAX_PING_BYTES) throw new ProtocolError('bad-length', `${name} frame with a ${payload.length}-byte payload (at most ${MAX_PING_BYTES})`, facts);
    return Object.freeze({ type: name, requestId, data: payload });
  }
  if (name === 'DATA' || name === 'STDOUT' || name === 'STDERR') return Object.freeze({ type: name, requestId, data: payload });
  const reader = JSON_READERS[name as keyof typeof JSON_READERS];
  const fields = new Fields(parseJsonObject(payload, facts), `${name} ${requestId}`, facts);
  return Object.freeze({ type: name, requestId, body: reader(fields) } as Message);
}

// ---------------------------------------------------------------------------------------------
// Encoders. Each checks its message with the reader above, so what we send round-trips.

function jsonFrame(type: FrameTypeName, requestId: number, body: object, maxFrame: number): Uint8Array {
  const payload = encodeUtf8(JSON.stringify(body));
  const frame = checkedFrame(type, requestId, payload, maxFrame);
  parseFrame({ type: FrameType[type], requestId, payload, offset: 0 });
  return frame;
}

function checkedFrame(type: FrameTypeName, requestId: number, payload: Uint8Array, maxFrame: number): Uint8Array {
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffffffff) {
    throw new ProtocolError('bad-id', `request id ${requestId} is not a 32-bit unsigned integer`, { type: FrameType[type] });
  }
  if (payload.length > maxFrame) {
    throw new ProtocolError('too-large', `${type} payload of ${payload.length} bytes is over maxFrame ${maxFrame}`, { type: FrameType[type], requestId });
  }
  return encodeFrame(FrameType[type], requestId, payload);
}

export function encodeHello(body: GuestHello | HostHello, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  return jsonFrame('HELLO', 0, body, maxFrame);
}

export function encodeRequest(requestId: number, body: RunRequest, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  return jsonFrame('REQUEST', requestId, body, maxFrame);
}

export function encodeExit(requestId: number, body: ExitReport, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  return jsonFrame('EXIT', requestId, body, maxFrame);
}

export function encodeDenied(requestId: number, body: Denial, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  return jsonFrame('DENIED', requestId, body, maxFrame);
}

export function encodeError(requestId: number, body: ErrorReport, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  return jsonFrame('ERROR', requestId, body, maxFrame);
}

/** One raw frame (DATA, STDOUT, STDERR); `bytes` must fit in maxFrame; see encodeChunks for more. */
export function encodeRaw(type: 'DATA' | 'STDOUT' | 'STDERR', requestId: number, bytes: Uint8Array, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  if (requestId === 0) throw new ProtocolError('bad-id', `${type} frame needs a non-zero request id`, { type: FrameType[type] });
  return checkedFrame(type, requestId, bytes, maxFrame);
}

/**
 * Seal a raw frame built in place: `frame` is HEADER_BYTES of room followed by the payload
 * (at most maxFrame bytes); the header is written, nothing is copied. Returns `frame`.
 */
export function sealRaw(type: 'DATA' | 'STDOUT' | 'STDERR', requestId: number, frame: Uint8Array, maxFrame = DEFAULT_MAX_FRAME, options: { readonly uncheckedPayload?: boolean } = {}): Uint8Array {
  if (options.uncheckedPayload === true && type !== 'DATA') throw new ProtocolError('bad-header', `only DATA frames may go without a payload CRC, not ${type}`, { type: FrameType[type] });
  if (requestId === 0) throw new ProtocolError('bad-id', `${type} frame needs a non-zero request id`, { type: FrameType[type] });
  if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0xffffffff) {
    throw new ProtocolError('bad-id', `request id ${requestId} is not a 32-bit unsigned integer`, { type: FrameType[type] });
  }
  if (frame.length < HEADER_BYTES) throw new ProtocolError('truncated', `a ${type} frame needs ${HEADER_BYTES} bytes of header room, got ${frame.length}`, { type: FrameType[type], requestId });
  if (frame.length - HEADER_BYTES > maxFrame) {
    throw new ProtocolError('too-large', `${type} payload of ${frame.length - HEADER_BYTES} bytes is over maxFrame ${maxFrame}`, { type: FrameType[type], requestId });
  }
  return sealFrame(frame, FrameType[type], requestId, options.uncheckedPayload === true ? FRAME_FLAG.uncheckedPayload : 0);
}

/** Split `bytes` into frames of at most maxFrame payload bytes (none for an empty input). */
export function encodeChunks(type: 'DATA' | 'STDOUT' | 'STDERR', requestId: number, bytes: Uint8Array, maxFrame = DEFAULT_MAX_FRAME): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += maxFrame) frames.push(encodeRaw(type, requestId, bytes.subarray(at, at + maxFrame), maxFrame));
  return frames;
}

export function encodeDataEnd(requestId: number): Uint8Array {
  if (requestId === 0) throw new ProtocolError('bad-id', 'DATA_END frame needs a non-zero request id', { type: FrameType.DATA_END });
  return checkedFrame('DATA_END', requestId, new Uint8Array(0), DEFAULT_MAX_FRAME);
}

export function encodeCancel(requestId: number): Uint8Array {
  if (requestId === 0) throw new ProtocolError('bad-id', 'CANCEL frame needs a non-zero request id', { type: FrameType.CANCEL });
  return checkedFrame('CANCEL', requestId, new Uint8Array(0), DEFAULT_MAX_FRAME);
}

export function encodePing(requestId: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return checkedFrame('PING', requestId, data, MAX_PING_BYTES);
}

export function encodePong(requestId: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return checkedFrame('PONG', requestId, data, MAX_PING_BYTES);
}

/** Encode any message (dispatches to the functions above). */
export function encodeMessage(message: Message, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  switch (message.type) {
    case 'HELLO': return encodeHello(message.body, maxFrame);
    case 'REQUEST': return encodeRequest(message.requestId, message.body, maxFrame);
    case 'EXIT': return encodeExit(message.requestId, message.body, maxFrame);
    case 'DENIED': return encodeDenied(message.requestId, message.body, maxFrame);
    case 'ERROR': return encodeError(message.requestId, message.body, maxFrame);
    case 'DATA': case 'STDOUT': case 'STDERR': return encodeRaw(message.type, message.requestId, message.data, maxFrame);
    case 'DATA_END': return encodeDataEnd(message.requestId);
    case 'CANCEL': return encodeCancel(message.requestId);
    case 'PING': return encodePing(message.requestId, message.data);
    case 'PONG': return encodePong(message.requestId, message.data);
  }
}

/** The resync marker a client sends before HELLO when a previous client may have died mid-frame. */
export function resyncMarker(): Uint8Array {
  return new Uint8Array(RESYNC_BYTES).fill(RESYNC_BYTE);
}
