// The QMP client (qemu.qmp's QMPClient on top of its AsyncProtocol): connect to a QEMU
// monitor socket, check the greeting, negotiate capabilities, then execute commands with
// ids (replies routed by id through the transport's pending map) and deliver events to
// listeners. Every way a call can end is a typed error from ./errors.ts.
//
// Not supported: passing file descriptors (`getfd`, `add-fd`, qemu.qmp's send_fd_scm). That
// needs SCM_RIGHTS ancillary data on the unix socket, which node:net cannot send without a
// native addon; chardevs are therefore added by path (QEMU opens/connects the socket itself).
import { createConnection } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  DEFAULT_MAX_LINE_BYTES,
  JsonLineConnection,
  silentLogger,
  TransportClosedError,
  TransportTimeoutError,
  type JsonObject,
  type Logger,
} from '../transport/index.js';
import {
  QmpCapabilityError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpExecuteError,
  QmpProtocolError,
  QmpStateError,
  QmpTimeoutError,
} from './errors.js';
import { deliver, finish, QmpEventListener, type EventFilter } from './events.js';
import { isEvent, parseEvent, parseGreeting, parseReply, type QmpEvent, type QmpGreeting } from './models.js';
import type { Runstate } from './runstate.js';

export interface QmpClientOptions {
  /** Where debug traffic (`--> `/`<-- `) and warnings go; silent by default. */
  logger?: Logger;
  /** Default time limit of execute() and waitEvent(), in ms; Infinity for none. Default 30 s. */
  timeoutMs?: number;
  /** Time limit for connect()/attach(): socket, greeting and qmp_capabilities. Default 10 s. */
  connectTimeoutMs?: number;
  /** Longest accepted message line in bytes; longer ends the session. Default 10 MiB. */
  maxMessageBytes?: number;
  /** Negotiate the `oob` capability (connect fails if QEMU does not offer it). Default false. */
  enableOob?: boolean;
  /** Opens the socket for connect(path); default node:net createConnection. For tests. */
  openSocket?: (path: string) => Duplex;
}

export interface ExecuteOptions {
  /** Time limit for the reply, in ms (default: the client's timeoutMs). */
  timeoutMs?: number;
  /** Send as `exec-oob` (needs `enableOob` and a command QEMU allows out of band). */
  oob?: boolean;
}

export interface ExecuteAndWaitOptions extends ExecuteOptions {
  /** The event the command is expected to cause. */
  event: string;
  predicate?: (event: QmpEvent) => boolean;
}

interface Resolvers<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

const DEFAULTS = { timeoutMs: 30_000, connectTimeoutMs: 10_000 };

function checkTimeout(what: string, value: number): number {
  if (!(value > 0) || (!Number.isFinite(value) && value !== Infinity)) throw new RangeError(`${what} must be a positive number of ms or Infinity, got ${value}`);
  return value;
}

function has(message: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(message, key);
}

function replyId(message: JsonObject): string | undefined {
  const id = message['id'];
  return typeof id === 'string' && !has(message, 'event') ? id : undefined;
}

export class QmpClient {
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #maxMessageBytes: number;
  readonly #enableOob: boolean;
  readonly #openSocket: (path: string) => Duplex;
  #state: Runstate = 'idle';
  #conn: JsonLineConnection | undefined;
  #greeting: QmpGreeting | undefined;
  #greetingWaiter: Resolvers<QmpGreeting> | undefined;
  #oob = false;
  readonly #listeners = new Set<QmpEventListener>();
  #nextId = 1;
  #lastClose: TransportClosedError | undefined;

  constructor(options: QmpClientOptions = {}) {
    this.#log = options.logger ?? silentLogger;
    this.#timeoutMs = checkTimeout('timeoutMs', options.timeoutMs ?? DEFAULTS.timeoutMs);
    this.#connectTimeoutMs = checkTimeout('connectTimeoutMs', options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs);
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#enableOob = options.enableOob ?? false;
    this.#openSocket = options.openSocket ?? ((path) => createConnection({ path }));
  }

  get runstate(): Runstate {
    return this.#state;
  }

  /** The greeting of the current session (undefined when idle). */
  get greeting(): QmpGreeting | undefined {
    return this.#greeting;
  }

  /** Whether `oob` was negotiated in this session. */
  get oob(): boolean {
    return this.#oob;
  }

  /** Why the last session ended (undefined before the first one ended). */
  get lastDisconnect(): TransportClosedError | undefined {
    return this.#lastClose;
  }

  /** Resolves with the reason once the current session ends (at once when idle). */
  whenDisconnected(): Promise<TransportClosedError | undefined> {
    return this.#conn === undefined ? Promise.resolve(this.#lastClose) : this.#conn.closed;
  }

  /** Connect to a QMP unix socket; resolves once the session is running. */
  connect(path: string, options: { timeoutMs?: number } = {}): Promise<QmpGreeting> {
    if (this.#state !== 'idle') return Promise.reject(new QmpStateError('connect', this.#state, 'idle'));
    return this.#start(() => this.#openSocket(path), path, options.timeoutMs);
  }

  /** Run a session over an already-connected stream (a socketpair, a test's fake peer). */
  attach(stream: Duplex, options: { timeoutMs?: number } = {}): Promise<QmpGreeting> {
    if (this.#state !== 'idle') return Promise.reject(new QmpStateError('attach', this.#state, 'idle'));
    return this.#start(() => stream, 'stream', options.timeoutMs);
  }

  /**
   * Run `command` and return its `return` value. Rejects with QmpExecuteError (QEMU said no),
   * QmpTimeoutError (no reply in time; the session stays up and a late reply is dropped),
   * QmpDisconnectedError (the session ended first) or QmpProtocolError (a malformed reply,
   * which also ends the session).
   */
  async execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>, options: ExecuteOptions = {}): Promise<T> {
    if (this.#state !== 'running' || this.#conn === undefined) throw new QmpStateError(`execute ${command}`, this.#state, 'running');
    if (options.oob === true && !this.#oob) {
      throw new QmpCapabilityError('oob', `QMP exec-oob ${command} needs the oob capability, which this session did not negotiate`);
    }
    const timeoutMs = checkTimeout('timeoutMs', options.timeoutMs ?? this.#timeoutMs);
    return (await this.#call(this.#conn, command, args, timeoutMs, options.oob === true)) as T;
  }

  /**
   * Start listening for events now (the listener is armed before this returns). Iterate it
   * with `for await`; it ends when the session ends. Needs a running session.
   */
  listen(filter: EventFilter = {}): QmpEventListener {
    if (this.#state !== 'running') throw new QmpStateError('listen', this.#state, 'running');
    const listener = new QmpEventListener(filter, (l) => this.#listeners.delete(l));
    this.#listeners.add(listener);
    return listener;
  }

  /** All events (or those named) of this session as an async iterator. */
  events(names?: readonly string[]): QmpEventListener {
    return this.listen(names === undefined ? {} : { names });
  }

  /**
   * The next event `name` (that `predicate` accepts). The wait is armed when this is called,
   * so `const p = waitEvent('STOP'); await execute('stop'); await p` cannot miss the event;
   * executeAndWait() does that for you and avoids an unhandled rejection if execute fails.
   */
  waitEvent(name: string, predicate?: (event: QmpEvent) => boolean, timeoutMs?: number): Promise<QmpEvent> {
    try {
      return this.#armWait(name, predicate, timeoutMs).promise;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Arm a wait for `options.event`, then execute; resolves with both once both happened. */
  async executeAndWait<T = unknown>(
    command: string,
    args: Readonly<Record<string, unknown>> | undefined,
    options: ExecuteAndWaitOptions,
  ): Promise<{ result: T; event: QmpEvent }> {
    const wait = this.#armWait(options.event, options.predicate, options.timeoutMs);
    let result: T;
    try {
      result = await this.execute<T>(command, args, options);
    } catch (err) {
      wait.cancel();
      throw err;
    }
    return { result, event: await wait.promise };
  }

  /** End the session from our side. Pending calls reject with QmpDisconnectedError. */
  async disconnect(): Promise<void> {
    const conn = this.#conn;
    if (conn === undefined) return;
    if (this.#state === 'running') this.#state = 'disconnecting';
    await conn.close('disconnect() called');
  }

  async #start(open: () => Duplex, target: string, timeoutMs: number | undefined): Promise<QmpGreeting> {
    const limit = checkTimeout('timeoutMs', timeoutMs ?? this.#connectTimeoutMs);
    this.#state = 'connecting';
    this.#greeting = undefined;
    this.#oob = false;
    let stream: Duplex;
    try {
      stream = open();
    } catch (err) {
      this.#state = 'idle';
      throw new QmpConnectError(target, (err as Error).message, err);
    }
    const greeted = new Promise<QmpGreeting>((resolve, reject) => (this.#greetingWaiter = { resolve, reject }));
    const conn = new JsonLineConnection(stream, {
      name: `qmp ${target}`,
      replyId,
      onMessage: (message) => this.#onMessage(conn, message),
      onClose: (error) => this.#onClose(conn, error),
      maxLineBytes: this.#maxMessageBytes,
      logger: this.#log,
    });
    this.#conn = conn;
    let timedOut: QmpTimeoutError | undefined;
    const timer = Number.isFinite(limit)
      ? setTimeout(() => {
          timedOut = new QmpTimeoutError('QMP greeting and qmp_capabilities reply', limit);
          void conn.close(timedOut.message);
        }, limit)
      : undefined;
    try {
      const greeting = await greeted;
      const offered = greeting.capabilities.includes('oob');
      if (this.#enableOob && !offered) {
        throw new QmpCapabilityError('oob', `QEMU does not offer the oob capability (offered: ${greeting.capabilities.join(', ') || 'none'})`);
      }
      await this.#call(conn, 'qmp_capabilities', this.#enableOob ? { enable: ['oob'] } : undefined, Infinity, false);
      clearTimeout(timer);
      this.#oob = this.#enableOob;
      this.#state = 'running';
      const v = greeting.version.qemu;
      this.#log.info(`qmp ${target}: connected to QEMU ${v.major}.${v.minor}.${v.micro} (${greeting.version.package})`);
      return greeting;
    } catch (err) {
      clearTimeout(timer);
      if (conn.isOpen) await conn.close('connect failed');
      const cause = timedOut ?? (err instanceof QmpDisconnectedError ? rootCause(err) : err);
      throw new QmpConnectError(target, (cause as Error).message, cause);
    }
  }

  async #call(conn: JsonLineConnection, command: string, args: Readonly<Record<string, unknown>> | undefined, timeoutMs: number, oob: boolean): Promise<unknown> {
    const id = `vo#${String(this.#nextId++).padStart(5, '0')}`;
    const sent: JsonObject = oob ? { 'exec-oob': command } : { execute: command };
    if (args !== undefined) sent['arguments'] = args;
    sent['id'] = id;
    let received: JsonObject;
    try {
      received = await conn.request(id, sent, timeoutMs);
    } catch (err) {
      if (err instanceof TransportTimeoutError) throw new QmpTimeoutError(`reply to ${command}`, timeoutMs);
      if (err instanceof TransportClosedError) throw new QmpDisconnectedError(`the reply to ${command}`, err);
      throw err;
    }
    let reply;
    try {
      reply = parseReply(received);
    } catch (err) {
      conn.abort(err as Error);
      throw err;
    }
    if (!reply.ok) throw new QmpExecuteError(sent, received, reply.errorClass, reply.description);
    return reply.value;
  }

  #armWait(name: string, predicate: ((event: QmpEvent) => boolean) | undefined, timeoutMs: number | undefined): { promise: Promise<QmpEvent>; cancel(): void } {
    const limit = checkTimeout('timeoutMs', timeoutMs ?? this.#timeoutMs);
    const listener = this.listen(predicate === undefined ? { names: [name] } : { names: [name], predicate });
    let cancelled = false;
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<QmpEvent>((resolve, reject) => {
      if (Number.isFinite(limit)) {
        timer = setTimeout(() => {
          listener.close();
          reject(new QmpTimeoutError(`event ${name}`, limit));
        }, limit);
      }
      listener.next().then(
        (result) => {
          clearTimeout(timer);
          listener.close();
          if (!result.done) resolve(result.value);
          else if (!cancelled) reject(new QmpDisconnectedError(`event ${name}`, this.#lastClose ?? new Error('listener closed')));
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
    return {
      promise,
      cancel: () => {
        cancelled = true;
        clearTimeout(timer);
        promise.catch(() => {});
        listener.close();
      },
    };
  }

  /** Messages that are not replies to a pending id (the transport routed those already). */
  #onMessage(conn: JsonLineConnection, message: JsonObject): void {
    if (conn !== this.#conn) return;
    const waiter = this.#greetingWaiter;
    if (waiter !== undefined) {
      this.#greetingWaiter = undefined;
      try {
        this.#greeting = parseGreeting(message);
        waiter.resolve(this.#greeting);
      } catch (err) {
        waiter.reject(err);
        conn.abort(err as Error);
      }
      return;
    }
    if (isEvent(message)) {
      let event: QmpEvent;
      try {
        event = parseEvent(message);
      } catch (err) {
        return this.#violation(conn, err as QmpProtocolError);
      }
      for (const listener of [...this.#listeners]) listener[deliver](event);
      return;
    }
    if (has(message, 'id')) {
      // The QMP spec: "Clients should drop all the responses that have an unknown id field";
      // these are replies to calls that timed out.
      this.#log.info(`qmp: dropping a reply with an unknown id: ${JSON.stringify(message['id'])}`);
      return;
    }
    if (has(message, 'error') || has(message, 'return')) {
      // QEMU answers without an id when it could not parse a command: it cannot be routed to a
      // caller, and the stream can no longer be trusted to pair replies with calls.
      return this.#violation(conn, new QmpProtocolError('no-id', `QEMU sent a reply without an id: ${JSON.stringify(message).slice(0, 200)}`, message));
    }
    this.#violation(conn, new QmpProtocolError('unexpected', `unexpected QMP message with keys ${Object.keys(message).slice(0, 8).join(', ')}`, message));
  }

  #violation(conn: JsonLineConnection, error: QmpProtocolError): void {
    this.#log.warn(`${conn.name}: ${error.message}`);
    conn.abort(error);
  }

  #onClose(conn: JsonLineConnection, error: TransportClosedError): void {
    if (conn !== this.#conn) return;
    this.#conn = undefined;
    this.#lastClose = error;
    this.#state = 'idle';
    this.#greetingWaiter?.reject(new QmpDisconnectedError('the QMP greeting', error));
    this.#greetingWaiter = undefined;
    for (const listener of [...this.#listeners]) listener[finish]();
    this.#listeners.clear();
    if (error.reason !== 'local') this.#log.warn(error.message);
  }
}

/** The error that ended a session: the socket error or protocol violation, else the close itself. */
function rootCause(error: QmpDisconnectedError): unknown {
  const closed = error.cause;
  return closed instanceof TransportClosedError && closed.cause !== undefined ? closed.cause : closed;
}
