// The messages between the daemon and its exec helper process (helper-client.ts,
// helper-server.ts), over the helper's stdin and stdout: a 4-byte big-endian length, then the
// message in V8's serialization format (node:v8), which carries the program's bytes and its
// output as typed arrays without base64 or JSON escaping.
//
// Both ends are this code, started by the daemon over a private pipe pair: the channel is not
// a trust boundary the way a guest's port is. Still, a length past MAX_HELPER_MESSAGE_BYTES or
// a message of the wrong shape is refused with the facts, never guessed at.
import { deserialize, serialize } from 'node:v8';
import type { ExecErrorKind } from './errors.js';
import type { ExecConfig, RunResult, SandboxChoice, StartInfo } from './run.js';
import type { Interpreter, Limits } from '../policy/index.js';
import type { VerifiedBinary } from './verified.js';

/** Largest message either side sends: a run request carries at most the 512 MiB binary ceiling. */
export const MAX_HELPER_MESSAGE_BYTES = 600 * 1024 * 1024;

/** What run() is given, without its callbacks and signal (those become messages). */
export interface HelperRunRequest {
  readonly binary: { readonly path: string; readonly measurement: string } | { readonly verified: VerifiedBinary };
  readonly argv?: readonly string[];
  readonly stdin?: Uint8Array | string;
  readonly env?: Readonly<Record<string, string>>;
  readonly limits: Limits;
  readonly interpreter?: Interpreter;
  readonly sandbox: SandboxChoice;
  readonly config?: ExecConfig;
}

export interface HelperErrorFacts {
  readonly kind: ExecErrorKind;
  readonly message: string;
  readonly path?: string;
  readonly measurement?: string;
  readonly actual?: string;
}

export type ToHelper = { readonly t: 'run'; readonly id: number; readonly request: HelperRunRequest } | { readonly t: 'abort'; readonly id: number };

export type FromHelper =
  | { readonly t: 'ready'; readonly pid: number }
  /** A line for the daemon's log (the helper does not write to the daemon's stderr itself: --json). */
  | { readonly t: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly line: string }
  | { readonly t: 'start'; readonly id: number; readonly info: StartInfo }
  | { readonly t: 'out'; readonly id: number; readonly fd: 1 | 2; readonly data: Uint8Array }
  /** The result without stdout/stderr: the client rebuilds them from the 'out' messages. */
  | { readonly t: 'done'; readonly id: number; readonly result: Omit<RunResult, 'stdout' | 'stderr'> }
  | { readonly t: 'fail'; readonly id: number; readonly error: HelperErrorFacts };

export function encodeHelperMessage(message: ToHelper | FromHelper): Buffer {
  const body = serialize(message);
  if (body.length > MAX_HELPER_MESSAGE_BYTES) throw new RangeError(`exec helper message of ${body.length} bytes is over the ${MAX_HELPER_MESSAGE_BYTES}-byte ceiling`);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** Splits a byte stream into messages; push() returns the ones completed by `chunk`. */
export class HelperMessageReader {
  #parts: Buffer[] = [];
  #buffered = 0;
  #need = -1;

  constructor(private readonly side: string) {}

  push(chunk: Buffer): unknown[] {
    this.#parts.push(chunk);
    this.#buffered += chunk.length;
    const out: unknown[] = [];
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < 4) break;
        this.#need = this.#take(4).readUInt32BE(0);
        if (this.#need > MAX_HELPER_MESSAGE_BYTES) throw new RangeError(`${this.side}: a message announces ${this.#need} bytes, over the ${MAX_HELPER_MESSAGE_BYTES}-byte ceiling`);
      }
      if (this.#buffered < this.#need) break;
      const body = this.#take(this.#need);
      this.#need = -1;
      out.push(deserialize(body));
    }
    return out;
  }

  /** Bytes of an incomplete message still held (0 between messages). */
  get pending(): number {
    return this.#buffered + (this.#need >= 0 ? 4 : 0);
  }

  #take(n: number): Buffer {
    const first = this.#parts[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#parts.shift();
      else this.#parts[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const part = this.#parts[0]!;
        const k = Math.min(part.length, n - at);
        part.copy(out, at, 0, k);
        at += k;
        if (k === part.length) this.#parts.shift();
        else this.#parts[0] = part.subarray(k);
      }
    }
    this.#buffered -= n;
    return out;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const ID_OK = (id: unknown): id is number => typeof id === 'number' && Number.isSafeInteger(id) && id > 0;

/** The message as the helper expects it from the daemon, or a sentence saying what is wrong. */
export function checkToHelper(m: unknown): ToHelper | string {
  if (!isRecord(m) || !ID_OK(m.id)) return 'not a message with a positive integer id';
  if (m.t === 'abort') return m as unknown as ToHelper;
  if (m.t !== 'run') return `unknown message type ${JSON.stringify(String(m.t)).slice(0, 40)}`;
  const r = m.request;
  if (!isRecord(r) || !isRecord(r.binary) || !isRecord(r.limits)) return `run ${m.id}: request without binary or limits`;
  return m as unknown as ToHelper;
}

/** The message as the daemon expects it from the helper, or a sentence saying what is wrong. */
export function checkFromHelper(m: unknown): FromHelper | string {
  if (!isRecord(m)) return 'not a message';
  if (m.t === 'ready') return typeof m.pid === 'number' ? (m as unknown as FromHelper) : 'ready without a pid';
  if (m.t === 'log') return (m.level === 'info' || m.level === 'warn' || m.level === 'error') && typeof m.line === 'string' ? (m as unknown as FromHelper) : 'log without level and line';
  if (!ID_OK(m.id)) return `message ${JSON.stringify(String(m.t)).slice(0, 40)} without a positive integer id`;
  switch (m.t) {
    case 'start':
      return isRecord(m.info) ? (m as unknown as FromHelper) : 'start without info';
    case 'out':
      return (m.fd === 1 || m.fd === 2) && m.data instanceof Uint8Array ? (m as unknown as FromHelper) : 'out without fd 1|2 and bytes';
    case 'done':
      return isRecord(m.result) ? (m as unknown as FromHelper) : 'done without a result';
    case 'fail':
      return isRecord(m.error) && typeof m.error.kind === 'string' && typeof m.error.message === 'string' ? (m as unknown as FromHelper) : 'fail without kind and message';
    default:
      return `unknown message type ${JSON.stringify(String(m.t)).slice(0, 40)}`;
  }
}
