// One guest connection on a VM's socket: bytes → FrameDecoder → HostSession → actions, and
// the I/O and timers the pure session leaves to us. The VM is whoever owns the socket the
// bytes arrived on (fixed when the connection is made); nothing a guest sends changes it.
//
// Bounds, per connection (one misbehaving VM costs only its own connection):
//  - the decoder holds at most 24 + maxFrame bytes; uploads at most maxUpload per request,
//    maxConcurrent requests (the session refuses more);
//  - a frame left incomplete for frameTimeoutMs is abandoned (decoder.abandonPartial);
//  - an upload not finished within uploadTimeoutMs ends with ERROR timeout;
//  - more than maxGarbageBytes of garbage or maxErrors refused frames since the guest's last
//    HELLO: the guest is not speaking the protocol, and the connection is closed;
//  - more than maxQueuedBytes of replies waiting for a guest that does not read: closed too.
import type { Socket } from 'node:net';
import type { VmIdentity } from '../policy/index.js';
import { type DecoderEvent, encodeMessage, ERROR_CODES, FrameDecoder, type HostAction, HostSession, MAX_FRAME_CEILING, type Message, type ProtocolLimits, type RunRequest } from '../protocol/index.js';
import { RequestRate } from './admission.js';
import { useNativeCodecs } from '../transport/index.js';
import { conclude, errorBody, type FinalReply, type PipelineContext, processWork, record, type Work, type WorkSink } from './pipeline.js';

export interface ConnectionBounds {
  /** Garbage bytes tolerated between two guest HELLOs (a resync marker is 65560). */
  readonly maxGarbageBytes: number;
  /** Refused frames tolerated between two guest HELLOs. */
  readonly maxErrors: number;
  /**
   * Reply bytes (program output above all) queued for a guest that does not read them. The
   * exec helper cannot be paused, so a guest past this is disconnected (its runs are killed)
   * rather than let the daemon's memory grow up to the policy's output limit per request.
   */
  readonly maxQueuedBytes: number;
  /** Requests a second one VM may start, on average (admission.ts says why). */
  readonly maxRequestsPerSecond: number;
  /** …and at once, after a quiet spell. */
  readonly requestBurst: number;
  /** An upload that sends no bytes for this long ends with ERROR timeout (uploadTimeoutMs bounds the whole). */
  readonly uploadIdleMs: number;
}

export interface ConnectionStats {
  readonly requests: number;
  readonly inFlight: number;
  readonly garbageBytes: number;
  readonly errors: number;
}

export class VmConnection {
  readonly vm: VmIdentity;
  readonly #socket: Socket;
  readonly #ctx: PipelineContext;
  readonly #bounds: ConnectionBounds;
  readonly #decoder: FrameDecoder;
  readonly #session: HostSession;
  readonly #works = new Map<number, Work>();
  readonly #sink: WorkSink;
  readonly #onClosed: (conn: VmConnection) => void;
  #closed = false;
  #frameTimer: NodeJS.Timeout | undefined;
  #frameStart = -1;
  #garbage = 0;
  #errors = 0;
  #requests = 0;
  readonly #rate: RequestRate;

  constructor(vm: VmIdentity, socket: Socket, limits: ProtocolLimits, ctx: PipelineContext, bounds: ConnectionBounds, onClosed: (conn: VmConnection) => void, software?: string) {
    this.vm = vm;
    this.#socket = socket;
    this.#ctx = ctx;
    this.#bounds = bounds;
    this.#onClosed = onClosed;
    // Before the first frame is verified (once per process; idempotent).
    useNativeCodecs();
    this.#decoder = new FrameDecoder({ from: 'guest', maxFrame: limits.maxFrame });
    this.#rate = new RequestRate(bounds.maxRequestsPerSecond, bounds.requestBurst);
    this.#session = new HostSession({ limits, ...(software === undefined ? {} : { software }), admit: (request) => this.#admit(request) });
    this.#sink = {
      output: (work, stream, bytes) => this.#sendAll(this.#session.output(work.ticket, stream, bytes)),
      finish: (work, reply) => this.#finish(work, reply),
    };
    socket.on('data', (chunk: Buffer) => this.#feed(chunk));
    socket.on('error', (err) => ctx.log.debug(`VM ${vm.name}: socket error: ${err.message}`, { vm: vm.name }));
    socket.on('close', () => this.#teardown('the connection closed'));
  }

  get stats(): ConnectionStats {
    return { requests: this.#requests, inFlight: this.#works.size, garbageBytes: this.#garbage, errors: this.#errors };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Close the connection (VM removed, replaced by a new connection, or misbehaving). */
  close(why: string): void {
    if (this.#closed) return;
    this.#socket.destroy();
    this.#teardown(why);
  }

  #feed(chunk: Uint8Array): void {
    if (this.#closed) return;
    this.#guard(() => {
      this.#handle(this.#decoder.feed(chunk));
      this.#armFrameTimer();
    });
  }

  /** A bug met while serving this guest ends this connection, never the daemon or another VM. */
  #guard(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.#ctx.log.error(`VM ${this.vm.name}: internal error, closing its connection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, { vm: this.vm.name });
      this.close('internal error');
    }
  }

  /** Run the frame timer while the decoder holds part of a frame; restart it when a new frame begins. */
  #armFrameTimer(): void {
    if (this.#closed) return;
    if (!this.#decoder.inFrame) {
      clearTimeout(this.#frameTimer);
      this.#frameTimer = undefined;
      this.#frameStart = -1;
      return;
    }
    const start = this.#decoder.offset - this.#decoder.buffered;
    if (this.#frameTimer !== undefined && start === this.#frameStart) return;
    clearTimeout(this.#frameTimer);
    this.#frameStart = start;
    this.#frameTimer = setTimeout(() => {
      this.#frameTimer = undefined;
      this.#ctx.log.debug(`VM ${this.vm.name}: frame at stream offset ${start} incomplete after ${this.#session.limits.frameTimeoutMs} ms; abandoned`, { vm: this.vm.name });
      this.#guard(() => {
        this.#handle(this.#decoder.abandonPartial());
        this.#armFrameTimer();
      });
    }, this.#session.limits.frameTimeoutMs);
  }

  #handle(events: readonly DecoderEvent[]): void {
    for (const event of events) {
      if (this.#closed) return;
      if (event.kind === 'garbage') {
        this.#garbage += event.length;
        if (this.#garbage > this.#bounds.maxGarbageBytes) return this.#misbehaved(`${this.#garbage} bytes of garbage (limit ${this.#bounds.maxGarbageBytes})`);
      } else if (event.kind === 'error') {
        this.#errors++;
        this.#ctx.log.debug(`VM ${this.vm.name}: frame refused: ${event.error.message}`, { vm: this.vm.name });
        if (this.#errors > this.#bounds.maxErrors) return this.#misbehaved(`${this.#errors} refused frames (limit ${this.#bounds.maxErrors}); last: ${event.error.message}`);
        this.#act(this.#session.onError(event.error));
      } else {
        this.#act(this.#session.onMessage(event.message));
      }
    }
  }

  /** The daemon's own bound on a request the protocol admits: the VM's request rate (admission.ts). */
  #admit(_request: RunRequest): string | undefined {
    if (!this.#rate.take()) return `more than ${this.#bounds.maxRequestsPerSecond} requests a second from this VM; slow down`;
    return undefined;
  }

  /** Give back the upload bytes the request holds of the budget (once). */
  #release(work: Work): void {
    if (work.held === 0) return;
    this.#ctx.uploads?.release(work.held);
    work.held = 0;
  }

  /**
   * An upload's bytes are charged to the budget shared by all VMs as they arrive (what the
   * daemon really holds; an upload announced and never sent holds nothing). Past it, the
   * request ends with ERROR busy, audited: the guest may send it again later.
   */
  #overBudget(work: Work): void {
    const budget = this.#ctx.uploads!;
    this.#endUpload(work, ERROR_CODES.busy, `the host holds ${budget.reserved} bytes of uploads from its VMs (limit ${budget.maxBytes}); try again shortly`);
  }

  #misbehaved(why: string): void {
    this.#ctx.log.warn(`VM ${this.vm.name}: disconnecting a guest that does not speak the protocol: ${why}`, { vm: this.vm.name });
    this.close(why);
  }

  #act(actions: readonly HostAction[]): void {
    for (const a of actions) {
      if (this.#closed) return;
      switch (a.type) {
        case 'send':
          this.#send(a.message);
          break;
        case 'begin': {
          this.#requests++;
          const work: Work = { ticket: a.ticket, requestId: a.requestId, request: a.request, chunks: [], received: 0, held: 0, started: performance.now(), abort: new AbortController(), done: false };
          this.#works.set(a.ticket, work);
          if (a.request.upload !== undefined) {
            work.uploadTimer = setTimeout(() => this.#guard(() => this.#uploadTimeout(work, false)), this.#session.limits.uploadTimeoutMs);
            this.#armIdle(work);
          }
          break;
        }
        case 'data': {
          const work = this.#works.get(a.ticket);
          if (work === undefined || work.done) break;
          if (this.#ctx.uploads !== undefined) {
            if (!this.#ctx.uploads.tryReserve(a.chunk.length)) {
              this.#overBudget(work);
              break;
            }
            work.held += a.chunk.length;
          }
          work.uploadStarted ??= performance.now();
          work.chunks.push(a.chunk);
          work.received += a.chunk.length;
          this.#armIdle(work);
          break;
        }
        case 'run': {
          const work = this.#works.get(a.ticket);
          if (work === undefined) break;
          this.#stopUploadTimers(work);
          if (work.request.upload !== undefined) work.uploadMs = Math.round((performance.now() - (work.uploadStarted ?? performance.now())) * 10) / 10;
          void processWork(this.#ctx, this.vm, work, this.#sink);
          break;
        }
        case 'abort': {
          const work = this.#works.get(a.ticket);
          if (work !== undefined) this.#abort(work, 'aborted', a.reason);
          break;
        }
        case 'reset':
          // A new guest session: the garbage that preceded its HELLO (a resync marker) is forgiven.
          this.#garbage = 0;
          this.#errors = 0;
          this.#ctx.log.info(`VM ${this.vm.name}: guest session ${a.resumed ? 'resumed' : 'started'}${a.aborted > 0 ? ` (${a.aborted} requests of the previous one aborted)` : ''}`, { vm: this.vm.name });
          break;
        case 'pong':
        case 'ignored':
          break;
      }
    }
  }

  /** End a request's work: its audit record now (before the session's ERROR reply is written), its run killed. */
  #abort(work: Work, code: string, reason: string): void {
    this.#stopUploadTimers(work);
    this.#release(work);
    work.chunks.length = 0;
    work.abort.abort();
    this.#works.delete(work.ticket);
    const decided = work.decision === undefined ? 'error' : work.decision.allow ? 'allow' : 'deny';
    record(this.#ctx, this.vm, work, { decision: decided, code, reason });
  }

  /**
   * (Re)start the upload's idle timer: an upload that sends nothing for uploadIdleMs ends, so a
   * stalled guest does not keep its bytes (and its share of the upload budget) for the whole
   * uploadTimeoutMs.
   */
  #armIdle(work: Work): void {
    clearTimeout(work.idleTimer);
    work.idleTimer = setTimeout(() => this.#guard(() => this.#uploadTimeout(work, true)), this.#bounds.uploadIdleMs);
  }

  #stopUploadTimers(work: Work): void {
    clearTimeout(work.uploadTimer);
    clearTimeout(work.idleTimer);
  }

  #uploadTimeout(work: Work, idle: boolean): void {
    if (work.done || this.#closed) return;
    const reason = idle
      ? `upload of request ${work.requestId} stalled: no bytes for ${this.#bounds.uploadIdleMs} ms (${work.received} of ${work.request.upload} bytes)`
      : `upload of request ${work.requestId} not finished within ${this.#session.limits.uploadTimeoutMs} ms (${work.received} of ${work.request.upload} bytes)`;
    this.#endUpload(work, ERROR_CODES.timeout, reason);
  }

  /** End a request during its upload: the bytes dropped, its audit record, then ERROR `code`. */
  #endUpload(work: Work, code: string, reason: string): void {
    this.#ctx.log.info(`VM ${this.vm.name}: request ${work.requestId} ended: ${reason}`, { vm: this.vm.name });
    this.#stopUploadTimers(work);
    work.chunks.length = 0;
    work.abort.abort();
    conclude(this.#ctx, this.vm, work, this.#sink, { decision: 'error', code, reason }, { type: 'ERROR', body: errorBody(code, reason) });
  }

  #finish(work: Work, reply: FinalReply): void {
    this.#stopUploadTimers(work);
    this.#release(work);
    this.#works.delete(work.ticket);
    if (this.#closed) return;
    this.#sendAll(this.#session.finish(work.ticket, reply));
  }

  #sendAll(messages: readonly Message[]): void {
    for (const m of messages) this.#send(m);
  }

  #send(message: Message): void {
    if (this.#closed || this.#socket.destroyed) return;
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(message, MAX_FRAME_CEILING);
    } catch (err) {
      // A reply we built breaks the protocol's rules (a bug): a final reply (EXIT, DENIED or
      // ERROR) is still replaced by one that encodes, so its request never goes unanswered.
      this.#ctx.log.error(`VM ${this.vm.name}: cannot encode ${message.type} for request ${message.requestId}: ${err instanceof Error ? err.message : String(err)}`, { vm: this.vm.name });
      if (message.type !== 'EXIT' && message.type !== 'DENIED' && message.type !== 'ERROR') return;
      bytes = encodeMessage({ type: 'ERROR', requestId: message.requestId, body: errorBody('internal', 'the host could not encode its reply (see its log)') }, MAX_FRAME_CEILING);
    }
    this.#socket.write(bytes);
    if (this.#socket.writableLength > this.#bounds.maxQueuedBytes) {
      this.#misbehaved(`${this.#socket.writableLength} bytes of replies queued, the guest does not read them (limit ${this.#bounds.maxQueuedBytes})`);
    }
  }

  #teardown(why: string): void {
    const first = !this.#closed;
    this.#closed = true;
    clearTimeout(this.#frameTimer);
    for (const work of [...this.#works.values()]) this.#abort(work, 'disconnected', why);
    if (first) {
      this.#ctx.log.info(`VM ${this.vm.name}: connection ended: ${why}`, { vm: this.vm.name });
      this.#onClosed(this);
    }
  }
}
