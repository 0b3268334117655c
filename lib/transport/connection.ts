// One line-JSON connection over a byte stream (a unix socket, or any Duplex in tests): the
// reader loop ("bottom half") splits and decodes lines and routes replies to the request
// waiting for their id; everything else goes to the owner's onMessage. When the connection
// ends, for whatever reason, every pending request is rejected with one TransportClosedError
// and onClose is called once. The protocol above (qmp) decides what ids and replies look like.
import type { Duplex } from 'node:stream';
import { FrameError, TransportClosedError, TransportTimeoutError, type CloseReason } from './errors.js';
import { decodeJsonLine, encodeJsonLine, LineSplitter, type JsonObject } from './framing.js';
import { logExcerpt, silentLogger, type Logger } from './logger.js';

/** 10 MiB, the read limit of QEMU's own Python client (qemu.qmp), "like libvirt's default". */
export const DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024;

export interface JsonLineOptions {
  /** Name in log lines and errors, e.g. `qmp /run/vm1.qmp`. */
  name: string;
  /** The id of the request `message` answers, or undefined when it is not a reply. */
  replyId(message: JsonObject): string | undefined;
  /** Every decoded message that is not a reply to a pending request's id. */
  onMessage(message: JsonObject): void;
  /** Called once, after pending requests were rejected, when the connection has ended. */
  onClose?(error: TransportClosedError): void;
  /** Longest accepted line in bytes (without the newline); default DEFAULT_MAX_LINE_BYTES. */
  maxLineBytes?: number;
  logger?: Logger;
}

interface Pending {
  resolve(reply: JsonObject): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export class JsonLineConnection {
  readonly name: string;
  readonly #stream: Duplex;
  readonly #options: JsonLineOptions;
  readonly #log: Logger;
  readonly #splitter: LineSplitter;
  readonly #pending = new Map<string, Pending>();
  #closedWith: TransportClosedError | undefined;
  #streamError: Error | undefined;
  readonly #closed: Promise<TransportClosedError>;
  #settleClosed!: (error: TransportClosedError) => void;

  constructor(stream: Duplex, options: JsonLineOptions) {
    this.name = options.name;
    this.#stream = stream;
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
    this.#splitter = new LineSplitter(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    this.#closed = new Promise((resolve) => (this.#settleClosed = resolve));
    stream.on('data', (chunk: Buffer | string) => this.#onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    stream.on('end', () => this.#finish('eof', `${this.name}: connection closed by the peer`));
    stream.on('error', (err: Error) => {
      this.#streamError ??= err;
      this.#finish('error', `${this.name}: connection failed: ${err.message}`, err);
    });
    stream.on('close', () => {
      const err = this.#streamError;
      if (err !== undefined) this.#finish('error', `${this.name}: connection failed: ${err.message}`, err);
      else this.#finish('eof', `${this.name}: connection closed`);
    });
    // Reported after the constructor returns, so the owner has its reference when onClose runs.
    if (stream.destroyed) queueMicrotask(() => this.#finish('eof', `${this.name}: stream was already closed`));
  }

  get isOpen(): boolean {
    return this.#closedWith === undefined;
  }

  /** Requests sent and not yet answered, timed out or rejected. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Resolves (never rejects) with the reason once the connection has ended. */
  get closed(): Promise<TransportClosedError> {
    return this.#closed;
  }

  /** Send one message without waiting for anything. Throws TransportClosedError when closed. */
  send(message: JsonObject): void {
    if (this.#closedWith !== undefined) throw this.#closedWith;
    const line = encodeJsonLine(message);
    this.#log.debug(`${this.name} --> ${logExcerpt(line.slice(0, -1))}`);
    this.#stream.write(line);
  }

  /**
   * Send `message` and wait for the reply whose id is `id` (the caller put `id` into the
   * message the way its protocol wants). A timeout rejects with TransportTimeoutError and
   * forgets the id, so a late reply is dropped as unknown; `timeoutMs` Infinity waits forever.
   */
  request(id: string, message: JsonObject, timeoutMs: number): Promise<JsonObject> {
    if (this.#closedWith !== undefined) return Promise.reject(this.#closedWith);
    if (this.#pending.has(id)) return Promise.reject(new RangeError(`${this.name}: request id ${id} is already pending`));
    return new Promise<JsonObject>((resolve, reject) => {
      const entry: Pending = { resolve, reject, timer: undefined };
      if (Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new TransportTimeoutError(this.name, id, timeoutMs));
        }, timeoutMs);
      }
      this.#pending.set(id, entry);
      try {
        this.send(message);
      } catch (err) {
        this.#settle(id)?.reject(err as Error);
      }
    });
  }

  /** End the connection from our side: pending requests are rejected (reason 'local'). */
  close(message = 'connection closed by us'): Promise<TransportClosedError> {
    this.#finish('local', `${this.name}: ${message}`);
    return this.#closed;
  }

  /**
   * End the connection because the peer broke the protocol (`cause` says how); used by the
   * layer above for messages that are valid JSON objects but not valid messages.
   */
  abort(cause: Error): void {
    this.#finish('protocol', `${this.name}: protocol violation by the peer: ${cause.message}`, cause);
  }

  #onData(chunk: Uint8Array): void {
    if (this.#closedWith !== undefined) return;
    try {
      this.#splitter.push(chunk, (line) => {
        this.#onLine(line);
        return this.#closedWith === undefined;
      });
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.abort(err);
    }
  }

  #onLine(line: Uint8Array): void {
    const decoded = decodeJsonLine(line);
    if (decoded === undefined) return;
    this.#log.debug(`${this.name} <-- ${logExcerpt(decoded.text)}`);
    const id = this.#options.replyId(decoded.message);
    if (id !== undefined) {
      const entry = this.#settle(id);
      if (entry !== undefined) {
        entry.resolve(decoded.message);
        return;
      }
    }
    this.#options.onMessage(decoded.message);
  }

  #settle(id: string): Pending | undefined {
    const entry = this.#pending.get(id);
    if (entry === undefined) return undefined;
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    return entry;
  }

  #finish(reason: CloseReason, message: string, cause?: unknown): void {
    if (this.#closedWith !== undefined) return;
    const error = new TransportClosedError(this.name, reason, message, cause);
    this.#closedWith = error;
    this.#log.debug(`${this.name}: closed (${reason}): ${message}`);
    if (reason === 'local') this.#stream.end();
    else this.#stream.destroy();
    // A graceful end() may leave a stubborn peer's socket open; do not wait for it forever.
    if (reason === 'local') setTimeout(() => this.#stream.destroy(), 1000).unref();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.#settleClosed(error);
    this.#options.onClose?.(error);
  }
}
