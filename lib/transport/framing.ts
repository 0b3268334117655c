// Line framing for JSON-per-line protocols (QMP, control sockets): split a byte stream at
// '\n' with a hard cap on line length, then decode each line as exactly one JSON object.
// No Node imports: it works on Uint8Array chunks, so it can be tested without sockets.
import { FrameError } from './errors.js';

const NEWLINE = 0x0a;
const CR = 0x0d;

export type JsonObject = { [key: string]: unknown };

/**
 * Splits a byte stream into lines. Memory is bounded: at most `maxLineBytes` bytes of an
 * unfinished line are held; one byte more is a FrameError('too-large'), raised as soon as it
 * is seen, not when the newline finally comes (a peer that never sends one cannot grow us).
 */
export class LineSplitter {
  readonly maxLineBytes: number;
  #parts: Uint8Array[] = [];
  #length = 0;

  constructor(maxLineBytes: number) {
    if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
      throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
    }
    this.maxLineBytes = maxLineBytes;
  }

  /** Bytes of an unfinished line held right now. */
  get buffered(): number {
    return this.#length;
  }

  /**
   * Feed one chunk; `onLine` gets each complete line without its '\n'. Lines before an
   * oversized one are delivered first, then the FrameError is thrown. `onLine` may return
   * false to stop (e.g. the connection closed while handling a line); the rest is dropped.
   */
  push(chunk: Uint8Array, onLine: (line: Uint8Array) => boolean | void): void {
    let start = 0;
    while (start < chunk.length) {
      const end = chunk.indexOf(NEWLINE, start);
      const stop = end === -1 ? chunk.length : end;
      const total = this.#length + (stop - start);
      if (total > this.maxLineBytes) {
        this.#parts = [];
        this.#length = 0;
        throw new FrameError('too-large', `line longer than the limit of ${this.maxLineBytes} bytes (${total} bytes without a newline so far)`, {
          length: total,
          limit: this.maxLineBytes,
        });
      }
      if (end === -1) {
        this.#parts.push(chunk.subarray(start));
        this.#length = total;
        return;
      }
      const line = this.#take(chunk.subarray(start, end), total);
      start = end + 1;
      if (onLine(line) === false) return;
    }
  }

  #take(last: Uint8Array, total: number): Uint8Array {
    if (this.#parts.length === 0) return last;
    const line = new Uint8Array(total);
    let at = 0;
    for (const part of this.#parts) {
      line.set(part, at);
      at += part.length;
    }
    line.set(last, at);
    this.#parts = [];
    this.#length = 0;
    return line;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decode one line as a JSON object. A trailing '\r' is dropped (QEMU ends lines with CRLF);
 * an empty line gives undefined (nothing to deliver). Anything else that is not a single JSON
 * object is refused: invalid UTF-8, invalid JSON, or a JSON value of another type.
 */
export function decodeJsonLine(line: Uint8Array): { text: string; message: JsonObject } | undefined {
  const length = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
  if (length === 0) return undefined;
  let text: string;
  try {
    text = utf8.decode(line.subarray(0, length));
  } catch {
    throw new FrameError('not-utf8', `line of ${length} bytes is not valid UTF-8`, { length });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new FrameError('not-json', `line of ${length} bytes is not JSON: ${(err as Error).message}`, { length });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw new FrameError('not-object', `line of ${length} bytes is ${kind}, not a JSON object`, { length });
  }
  return { text, message: value as JsonObject };
}

/** One message as a line: JSON.stringify never emits a raw newline, so the frame is unambiguous. */
export function encodeJsonLine(message: JsonObject): string {
  return `${JSON.stringify(message)}\n`;
}
