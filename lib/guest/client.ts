// `submit`: the guest side of one offload over the channel (docs/protocol.md): HELLO with a
// fresh nonce and the REQUEST right behind it, naming it (sent again, after the resync marker
// and with a new nonce that resumes the previous one, while the host does not answer: it may
// not be connected yet, or a killed client left it inside a frame), the host's limits checked,
// the binary in DATA frames of at most maxFrame bytes, then the program's output streamed to
// our own stdout/stderr until its one final reply.
//
// Exit statuses (EXIT_STATUS) follow the busybox client of docs/protocol.md and sysexits.h:
// the program's own exit code, 125 when a signal ended it, 77 denied by the policy, 70 the
// host refused the request (ERROR, or it breaks a limit the host announced), 71 the channel
// failed, 66 the file cannot be read, 130 interrupted (CANCEL sent).
import { randomUUID } from 'node:crypto';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import type { Duplex, Writable } from 'node:stream';
import { UsageError } from '../errors.js';
import {
  argBytes,
  BINARY_NAME,
  type DecoderEvent,
  type Denial,
  encodeCancel,
  encodeDataEnd,
  encodeHello,
  encodePong,
  encodeRequest,
  type ErrorReport,
  type ExitReport,
  FrameDecoder,
  HEADER_BYTES,
  type HostHello,
  MEASUREMENT,
  MIN_FRAME,
  PROTOCOL_VERSIONS,
  ProtocolError,
  type ProtocolLimits,
  resyncMarker,
  type RunRequest,
  sealRaw,
} from '../protocol/index.js';
import { VERSION } from '../version.js';
import { type ByteChannel, openChannel } from './channel.js';
import { useNativeCodecs } from '../transport/index.js';
import { findPort, type FindPortOptions } from './port.js';

/** How long, before the host's HELLO, an incomplete frame is waited for (see #pump). */
const PARTIAL_FRAME_MS = 500;

export const EXIT_STATUS = Object.freeze({
  /** The remote program was ended by a signal (like a shell's 128+n, but one fixed value). */
  signal: 125,
  /** The host's policy refused the binary (EX_NOPERM). */
  denied: 77,
  /** The host refused the request (ERROR reply, or a limit from its HELLO) (EX_SOFTWARE). */
  hostError: 70,
  /** The channel failed: no port, no answer, closed or unreadable (EX_OSERR). */
  channel: 71,
  /** The file to upload cannot be read (EX_NOINPUT). */
  noInput: 66,
  /** Interrupted (Ctrl-C); CANCEL was sent. */
  interrupted: 130,
} as const);

export interface SubmitTimeouts {
  /** No host HELLO for this long: send the marker and a new HELLO (default 1000 ms). */
  readonly helloRetryMs?: number;
  /** No handshake within this long: give up with status 71 (default 30000 ms). */
  readonly handshakeMs?: number;
  /** After CANCEL, wait this long for the host's reply (default 1000 ms). */
  readonly cancelMs?: number;
  /** A port device reading end-of-file (host not connected) is read again after this long (default 50 ms). */
  readonly pollMs?: number;
}

export interface SubmitOptions {
  /** The port: a device or unix socket path, an open duplex stream, or a port name to find (findPort). */
  readonly port: string | Duplex | ({ readonly name: string } & FindPortOptions);
  /** The binary to upload; exactly one of file and measurement. */
  readonly file?: string;
  /** Run the binary with this measurement, already installed on the host. */
  readonly measurement?: string;
  /** What we call the binary (informational for the host). */
  readonly name?: string;
  /** Arguments after the program name. */
  readonly argv: readonly string[];
  readonly stdout: Writable;
  readonly stderr: Writable;
  /** Abort (Ctrl-C): CANCEL the request and return 130. */
  readonly signal?: AbortSignal;
  readonly timeouts?: SubmitTimeouts;
  /**
   * Send the 64 KiB resync marker before the first HELLO too. By default the first HELLO goes
   * alone and the marker precedes only the HELLOs sent again after helloRetryMs without an
   * answer (docs/protocol.md, "Resync"): after a client that died mid-frame, that costs one
   * retry wait; when that is likely (a client was just killed), this saves it.
   */
  readonly resyncFirst?: boolean;
}

export type SubmitOutcome = 'exit' | 'signal' | 'denied' | 'error' | 'refused' | 'channel' | 'no-input' | 'interrupted';

export interface SubmitResult {
  /** The exit status `virt-offload submit` exits with. */
  readonly status: number;
  readonly outcome: SubmitOutcome;
  /** What went wrong, as printed on stderr (not for 'exit' and 'signal'). */
  readonly message?: string;
  readonly exit?: ExitReport;
  readonly denial?: Denial;
  readonly error?: ErrorReport;
  /** The host's HELLO limits, once known. */
  readonly limits?: ProtocolLimits;
}

/** Upload reads from the file are about this large (a multiple of the frame payload). */
const READ_BLOCK = 1 << 20;
/** Writes to a virtio port device take at most this much at a time (virtio_console). */
const PORT_WRITE = 32 * 1024;

/** The payload of a DATA frame: maxFrame, or less so that the frame is a multiple of PORT_WRITE bytes. */
function framePayload(maxFrame: number): number {
  const whole = Math.floor((HEADER_BYTES + maxFrame) / PORT_WRITE) * PORT_WRITE - HEADER_BYTES;
  return whole > 0 ? Math.min(whole, maxFrame) : maxFrame;
}

/** Our request's id: one request per connection, so always the first. */
const REQUEST_ID = 1;

/**
 * Submit one binary (or measurement) to the host and stream its output. Throws UsageError for
 * options that are wrong in themselves; every other outcome is a SubmitResult whose message
 * has already been written to `stderr`.
 */
export async function submit(options: SubmitOptions): Promise<SubmitResult> {
  const base = checkOptions(options);
  useNativeCodecs();
  let file: { handle: FileHandle; size: number } | undefined;
  if (options.file !== undefined) {
    try {
      const handle = await openFile(options.file, 'r');
      const st = await handle.stat();
      if (!st.isFile()) {
        await handle.close();
        return report(options, { status: EXIT_STATUS.noInput, outcome: 'no-input', message: `${options.file} is not a regular file` });
      }
      file = { handle, size: st.size };
    } catch (err) {
      return report(options, { status: EXIT_STATUS.noInput, outcome: 'no-input', message: `cannot read ${options.file}: ${(err as Error).message}` });
    }
  }
  let channel: ByteChannel;
  try {
    const port = options.port;
    channel = await openChannel(typeof port === 'string' || !('name' in port) ? port : findPort(port.name, port));
  } catch (err) {
    await file?.handle.close();
    return report(options, { status: EXIT_STATUS.channel, outcome: 'channel', message: (err as Error).message });
  }
  const conversation = new Conversation(channel, options);
  try {
    return report(options, await conversation.run(base, file));
  } finally {
    conversation.stop();
    channel.close();
    await file?.handle.close();
  }
}

/** The request without what depends on the file; throws UsageError for bad options. */
function checkOptions(o: SubmitOptions): RunRequest {
  if ((o.file === undefined) === (o.measurement === undefined)) throw new UsageError('give either a file to upload or --measurement, not both or neither');
  if (o.measurement !== undefined && !MEASUREMENT.test(o.measurement)) {
    throw new UsageError(`--measurement ${JSON.stringify(o.measurement)}: expected sha256:<64 hex digits> or blake3:<64 hex digits>`, '--measurement');
  }
  if (o.name !== undefined && !BINARY_NAME.test(o.name)) throw new UsageError(`--name ${JSON.stringify(o.name)}: expected ${BINARY_NAME.source}`, '--name');
  o.argv.forEach((a, i) => {
    if (a.includes('\0')) throw new UsageError(`argument ${i + 1} contains a NUL character`);
  });
  return {
    argv: [...o.argv],
    env: {},
    ...(o.name === undefined ? {} : { name: o.name }),
    ...(o.measurement === undefined ? {} : { measurement: o.measurement }),
  };
}

function report(o: SubmitOptions, result: SubmitResult): SubmitResult {
  if (result.message !== undefined) o.stderr.write(`virt-offload: ${result.message}\n`);
  return result;
}

type Final =
  | { kind: 'exit'; body: ExitReport }
  | { kind: 'denied'; body: Denial }
  | { kind: 'error'; body: ErrorReport }
  | { kind: 'channel'; message: string };

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve(value) {
      if (d.settled) return;
      d.settled = true;
      resolve(value);
    },
  };
  return d;
}

class Conversation {
  readonly #channel: ByteChannel;
  readonly #o: SubmitOptions;
  readonly #decoder = new FrameDecoder({ from: 'host' });
  readonly #retryMs: number;
  readonly #handshakeMs: number;
  readonly #cancelMs: number;
  readonly #pollMs: number;
  /** The nonce of the last HELLO we sent. */
  #nonce = '';
  /** Every nonce we sent: the first host HELLO echoing one of them starts our session. */
  readonly #nonces = new Set<string>();
  readonly #hello = deferred<{ hello: HostHello; nonce: string } | { refused: ErrorReport }>();
  /** Set once the host's HELLO arrived: from then on a device reading end-of-file means the host left. */
  #ready = false;
  #requestSent = false;
  /** The nonce of the first HELLO, when our request was sent right behind it. */
  #requestSession: string | undefined;
  readonly #final = deferred<Final>();
  readonly #aborted = deferred<'aborted'>();
  /** Writes go out one at a time, whole frames, in order (PONGs from the reader, DATA from the uploader). */
  #writes: Promise<void> = Promise.resolve();
  #stopped = false;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(channel: ByteChannel, o: SubmitOptions) {
    this.#channel = channel;
    this.#o = o;
    this.#retryMs = o.timeouts?.helloRetryMs ?? 1000;
    this.#handshakeMs = o.timeouts?.handshakeMs ?? 30_000;
    this.#cancelMs = o.timeouts?.cancelMs ?? 1000;
    this.#pollMs = o.timeouts?.pollMs ?? 50;
  }

  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  /**
   * A timer that keeps the process alive (an unref'd one could let Node exit mid-handshake,
   * with status 0, while every other wait is on an unref'd timer too); stop() clears them.
   */
  #sleep(ms: number): Promise<'timeout'> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve('timeout');
      }, ms);
      this.#timers.add(timer);
    });
  }

  async run(base: RunRequest, file: { handle: FileHandle; size: number } | undefined): Promise<SubmitResult> {
    const signal = this.#o.signal;
    if (signal !== undefined) {
      if (signal.aborted) return interrupted('interrupted before the request was sent');
      signal.addEventListener('abort', () => this.#aborted.resolve('aborted'), { once: true });
    }
    const request: RunRequest = file === undefined ? base : { ...base, upload: file.size };
    const handshake = await this.#handshake(request);
    if ('status' in handshake) return handshake;
    const { limits } = handshake;

    const refusal = checkLimits(request, limits, this.#o.file);
    if (refusal !== undefined) {
      // Sent behind the HELLO already: the host refuses it too, or runs it; either way it must stop.
      if (this.#requestSent) await this.#send(encodeCancel(REQUEST_ID)).catch(() => undefined);
      return { status: EXIT_STATUS.hostError, outcome: 'refused', message: refusal, limits };
    }
    let frame: Uint8Array | undefined;
    if (!this.#requestSent) {
      try {
        // Named after the last HELLO we sent: every HELLO before it resumed into it or was never read.
        frame = encodeRequest(REQUEST_ID, { ...request, session: this.#nonce }, limits.maxFrame);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        return { status: EXIT_STATUS.hostError, outcome: 'refused', message: `the request does not fit the host's limits: ${err.message}`, limits };
      }
    }

    const sending = (async (): Promise<string | undefined> => {
      if (frame !== undefined) {
        // Before the write: its completion may be reported after the reader has the reply.
        this.#requestSent = true;
        await this.#send(frame);
      }
      if (file !== undefined) return this.#upload(file, limits.maxFrame);
      return undefined;
    })();
    // The uploader ends on its own once a final reply arrives; a failed write is a channel failure.
    const sendFailure = sending.then(
      (problem) => (problem === undefined ? new Promise<never>(() => undefined) : { kind: 'local' as const, message: problem }),
      (err: unknown) => ({ kind: 'channel' as const, message: (err as Error).message }),
    );
    const first = await Promise.race([this.#final.promise, this.#aborted.promise, sendFailure]);
    if (first === 'aborted') return this.#cancel(limits);
    if (first.kind === 'local') {
      // The file changed while it was read: the host must not run what we did not mean to send.
      await this.#send(encodeCancel(REQUEST_ID)).catch(() => undefined);
      return { status: EXIT_STATUS.noInput, outcome: 'no-input', message: first.message, limits };
    }
    return finalResult(first, limits);
  }

  /**
   * HELLO until the host answers one, with `request` sent right behind the first HELLO when it
   * fits the frame size every host accepts before its HELLO (docs/protocol.md, "Handshake"):
   * that saves a round trip. It names that HELLO (`session`), so a host that never read the
   * HELLO (a dead client's frame swallowed it) refuses it rather than run it in another
   * session. A HELLO sent again after helloRetryMs follows the resync marker and resumes the
   * previous one (`resume`), so a host that was only slow keeps the request in flight. The
   * reader sets #requestSent when the answer shows the host has our request; otherwise run()
   * sends it once the answer came.
   */
  async #handshake(request: RunRequest): Promise<{ limits: ProtocolLimits } | SubmitResult> {
    const deadline = Date.now() + this.#handshakeMs;
    let sent: Promise<void> | undefined;
    let sentDone = true;
    let marker = this.#o.resyncFirst === true;
    for (;;) {
      // A HELLO still stuck in the write queue (the host is not reading) is not sent again:
      // retries must not pile up 64 KiB markers in memory.
      if (sentDone) {
        const previous = this.#nonces.size === 0 ? undefined : this.#nonce;
        // 122 random bits from node's batch of UUIDs: one randomBytes() call cost a guest under
        // TCG ~0.3 ms per submit. A nonce tells our HELLOs' answers from stale ones; it is no secret.
        this.#nonce = randomUUID().replaceAll('-', '');
        this.#nonces.add(this.#nonce);
        const hello = encodeHello(
          { role: 'guest', versions: [...PROTOCOL_VERSIONS], nonce: this.#nonce, ...(previous === undefined ? {} : { resume: previous }), software: `virt-offload/${VERSION}` },
          MIN_FRAME,
        );
        // The first HELLO alone (the usual case: the last client ended cleanly); every later
        // one after the marker: a client killed mid-frame may have left the host inside a frame
        // that swallowed our HELLO.
        sentDone = false;
        if (marker) sent = this.#send(resyncMarker()).then(() => this.#send(hello));
        else {
          const early = previous === undefined ? earlyRequest(request, this.#nonce) : undefined;
          if (early !== undefined) this.#requestSession = this.#nonce;
          sent = this.#send(early === undefined ? hello : concatBytes(hello, early));
        }
        marker = true;
        sent.then(() => (sentDone = true), () => undefined);
        // Reading starts once the first HELLO (and the REQUEST behind it) is written: setting up
        // the reader of a port device costs a guest under TCG about a millisecond, which the host
        // then spends on our request. A retry starts it regardless (nothing may go unread).
        if (this.#nonces.size === 1) sent.then(() => this.#startPump(), () => this.#startPump());
        else this.#startPump();
      }
      const wait = Math.max(0, Math.min(this.#retryMs, deadline - Date.now()));
      let got = await Promise.race([
        this.#hello.promise,
        this.#final.promise,
        this.#aborted.promise,
        this.#sleep(wait),
        (sent as Promise<void>).then(() => new Promise<never>(() => undefined), (err: unknown) => ({ kind: 'channel' as const, message: (err as Error).message })),
      ]);
      // The answer may have come while the timer fired: it counts (the reader is already past it).
      if (got === 'timeout' && this.#hello.settled) got = await this.#hello.promise;
      if (got === 'aborted') {
        // The host may have our request already: CANCEL it (a host without it drops the frame).
        if (this.#requestSession !== undefined) await this.#send(encodeCancel(REQUEST_ID)).catch(() => undefined);
        return interrupted('interrupted while waiting for the host');
      }
      if (got === 'timeout') {
        if (Date.now() >= deadline) {
          return { status: EXIT_STATUS.channel, outcome: 'channel', message: `no answer from the host within ${this.#handshakeMs} ms (is the daemon serving this VM?)` };
        }
        continue;
      }
      if ('kind' in got) return finalResult(got, undefined);
      if ('refused' in got) {
        return { status: EXIT_STATUS.hostError, outcome: 'error', error: got.refused, message: `the host refused the connection: ${got.refused.code}: ${got.refused.message}` };
      }
      return { limits: got.hello.limits };
    }
  }

  /**
   * Send the file in DATA frames, then DATA_END; stops early once the host has replied. The
   * file is read in blocks of about 1 MiB, the next one while the current one is sent, each
   * with one readv(2) straight into the payloads of its frames, laid out back to back with
   * room for their headers: the frames are sealed in place (no copy of the data, no buffer
   * per frame) and the block goes to the channel in one write call. Two block buffers take
   * turns (a write has returned before its buffer is read into again): fresh ones would cost
   * a page fault and a page of zeroes per 4 KiB, which under TCG is as much as the read. A frame's payload is cut
   * so the whole frame is a multiple of 32 KiB when it can be: virtio_console takes at most
   * 32 KiB per write(2), and a 65560-byte frame would cost a third write, and a virtqueue
   * round trip, for 24 bytes.
   */
  async #upload(file: { handle: FileHandle; size: number }, maxFrame: number): Promise<string | undefined> {
    const payload = framePayload(maxFrame);
    const frameBytes = HEADER_BYTES + payload;
    const framesPerBlock = Math.max(1, Math.floor(READ_BLOCK / frameBytes));
    /** Frames holding the file's bytes from `at` on (a block): how many bytes of the file they hold. */
    const buffers: Uint8Array[] = [];
    let turn = 0;
    const readBlock = async (at: number): Promise<{ frames: Uint8Array; bytes: number }> => {
      const want = Math.min(framesPerBlock * payload, file.size - at);
      const count = Math.ceil(want / payload);
      // The block before last was written (awaited) before this read was started.
      const index = turn++ % 2;
      buffers[index] ??= new Uint8Array(Math.min(framesPerBlock * payload, file.size) + framesPerBlock * HEADER_BYTES);
      const block = buffers[index].subarray(0, want + count * HEADER_BYTES);
      const slots: Uint8Array[] = [];
      for (let i = 0; i < count; i++) {
        const start = i * frameBytes + HEADER_BYTES;
        slots.push(block.subarray(start, Math.min(block.length, start + payload)));
      }
      const { bytesRead } = await file.handle.readv(slots, at);
      // A short read (the file shrank, or was cut at EOF): seal only the frames it filled.
      const full = Math.floor(bytesRead / payload);
      const tail = bytesRead - full * payload;
      const used = full * frameBytes + (tail > 0 ? HEADER_BYTES + tail : 0);
      // Without the payload CRC: the host measures every byte of the upload, and under TCG
      // the CRC cost the guest about as much CPU as the port writes (docs/protocol.md, "Frames").
      for (let f = 0; f * frameBytes < used; f++) {
        sealRaw('DATA', REQUEST_ID, block.subarray(f * frameBytes, Math.min(used, (f + 1) * frameBytes)), maxFrame, { uncheckedPayload: true });
      }
      return { frames: block.subarray(0, used), bytes: bytesRead };
    };
    let sent = 0;
    let next: Promise<{ frames: Uint8Array; bytes: number }> | undefined = file.size > 0 ? readBlock(0) : undefined;
    try {
      while (next !== undefined && !this.#final.settled && !this.#aborted.settled) {
        const block = await next;
        if (block.bytes === 0) return `${this.#o.file} shrank while it was uploaded (${sent} of ${file.size} bytes read); request cancelled`;
        const end = sent + block.bytes;
        next = end < file.size ? readBlock(end) : undefined;
        await this.#send(block.frames);
        sent = end;
      }
    } finally {
      // A read still running when we stop early: its failure is nobody's business.
      next?.catch(() => undefined);
    }
    if (this.#final.settled || this.#aborted.settled) return undefined;
    await this.#send(encodeDataEnd(REQUEST_ID));
    return undefined;
  }

  async #cancel(limits: ProtocolLimits): Promise<SubmitResult> {
    const result = interrupted('interrupted; the request was cancelled', limits);
    if (!this.#requestSent || this.#final.settled) return result;
    await Promise.race([this.#send(encodeCancel(REQUEST_ID)).then(() => this.#final.promise), this.#sleep(this.#cancelMs)]).catch(() => undefined);
    return result;
  }

  #send(bytes: Uint8Array): Promise<void> {
    const next = this.#writes.then(() => this.#channel.write(bytes));
    this.#writes = next.catch(() => undefined);
    return next;
  }

  #pumping = false;
  /** When the decoder began to hold the incomplete frame it holds now (undefined: none). */
  #partialSince: number | undefined;

  /** Start reading the channel (once). */
  #startPump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    void this.#pump();
  }

  /** Read the channel until the final reply or its end, feeding the decoder and acting on what it completes. */
  async #pump(): Promise<void> {
    try {
      while (!this.#stopped && !this.#final.settled) {
        const chunk = await this.#channel.read();
        if (chunk === null) {
          this.#decoder.end();
          this.#fail('the host closed the channel before replying');
          return;
        }
        if (chunk.length === 0) {
          // A port device reads end-of-file while the host end is not connected (platform.md, pitfall 7).
          if (this.#ready) {
            this.#fail('the host end of the port disconnected before replying');
            return;
          }
          await this.#sleep(this.#pollMs);
          continue;
        }
        // Before the host's HELLO, a frame left incomplete this long is not the host's answer:
        // it began in an earlier client's leftovers (a header that happens to check out), and
        // it would swallow every host HELLO after it. Drop its first byte and scan the bytes it
        // held again (docs/protocol.md, "Receiving frames"), as the host does with its own.
        if (!this.#ready && this.#partialSince !== undefined && performance.now() - this.#partialSince > PARTIAL_FRAME_MS) {
          this.#partialSince = undefined;
          for (const event of this.#decoder.abandonPartial()) await this.#event(event);
        }
        for (const event of this.#decoder.feed(chunk)) await this.#event(event);
        if (!this.#decoder.inFrame) this.#partialSince = undefined;
        else this.#partialSince ??= performance.now();
      }
    } catch (err) {
      this.#fail((err as Error).message);
    }
  }

  #fail(message: string): void {
    this.#final.resolve({ kind: 'channel', message });
  }

  async #event(event: DecoderEvent): Promise<void> {
    if (this.#final.settled) return;
    if (event.kind === 'garbage') return;
    if (event.kind === 'error') {
      // Before our request, leftovers of an earlier client's conversation are expected. After
      // it, an unreadable frame of our request may have been its reply: waiting would hang.
      if (this.#requestSent && event.error.requestId === REQUEST_ID) this.#fail(`unreadable frame from the host: ${event.error.message}`);
      return;
    }
    const m = event.message;
    if (m.type === 'PING') {
      await this.#send(encodePong(m.requestId, m.data)).catch(() => undefined);
      return;
    }
    if (!this.#ready) {
      if (m.type === 'HELLO' && m.body.role === 'host' && this.#nonces.has(m.body.nonce)) {
        // Ready here, not when #handshake resumes: the next chunk may be read before it does.
        // The first answer to any of our HELLOs: the later ones resume its session.
        this.#ready = true;
        // The host read the HELLO our request rode behind, so it read the request too and
        // answers it; any other first answer means it never read it, or refused it as stale.
        if (this.#requestSession !== undefined && m.body.nonce === this.#requestSession) this.#requestSent = true;
        this.#hello.resolve({ hello: m.body, nonce: m.body.nonce });
      }
      // Only an ERROR version with id 0 ends the wait: the host speaks none of our versions.
      else if (m.type === 'ERROR' && m.requestId === 0 && m.body.code === 'version') this.#hello.resolve({ refused: m.body });
      return;
    }
    if (m.type === 'HELLO') {
      // The answer to a HELLO we sent again before the first answer came: it resumed our
      // session, unless the host began a new one (it restarted), which ended our request.
      if (m.body.role === 'host' && this.#nonces.has(m.body.nonce) && m.body.resumed !== true && this.#requestSent) {
        this.#fail('the host began a new session before replying (did the daemon restart?); the request was ended there');
      }
      return;
    }
    if (m.type === 'ERROR' && m.requestId === 0) {
      this.#o.stderr.write(`virt-offload: the host reports: ${m.body.code}: ${m.body.message}\n`);
      return;
    }
    if (!this.#requestSent || m.requestId !== REQUEST_ID) return;
    switch (m.type) {
      case 'STDOUT': return writeTo(this.#o.stdout, m.data);
      case 'STDERR': return writeTo(this.#o.stderr, m.data);
      case 'EXIT': return this.#final.resolve({ kind: 'exit', body: m.body });
      case 'DENIED': return this.#final.resolve({ kind: 'denied', body: m.body });
      case 'ERROR': return this.#final.resolve({ kind: 'error', body: m.body });
      default: return;
    }
  }
}

/**
 * The REQUEST frame to send right behind the first HELLO, naming it: when it fits the frame
 * size every host accepts before its HELLO (MIN_FRAME), else undefined (it waits for the answer).
 */
function earlyRequest(request: RunRequest, session: string): Uint8Array | undefined {
  try {
    return encodeRequest(REQUEST_ID, { ...request, session }, MIN_FRAME);
  } catch (err) {
    if (err instanceof ProtocolError) return undefined;
    throw err;
  }
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Write and wait until the stream took it: the host's output is not buffered without bound. */
function writeTo(stream: Writable, data: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    stream.write(data, () => resolve());
  });
}

function interrupted(message: string, limits?: ProtocolLimits): SubmitResult {
  return { status: EXIT_STATUS.interrupted, outcome: 'interrupted', message, ...(limits === undefined ? {} : { limits }) };
}

/** Why the host would refuse `request` under `limits` (checked before anything is uploaded), or undefined. */
export function checkLimits(request: RunRequest, limits: ProtocolLimits, file?: string): string | undefined {
  if (request.argv.length > limits.maxArgs) return `${request.argv.length} arguments; the host allows at most ${limits.maxArgs}`;
  const bytes = argBytes(request);
  if (bytes > limits.maxArgBytes) return `the arguments take ${bytes} bytes; the host allows at most ${limits.maxArgBytes}`;
  if (request.upload !== undefined && request.upload > limits.maxUpload) {
    return `${file ?? 'the file'} is ${request.upload} bytes; the host accepts uploads of at most ${limits.maxUpload} bytes`;
  }
  return undefined;
}

function finalResult(final: Final, limits: ProtocolLimits | undefined): SubmitResult {
  const extra = limits === undefined ? {} : { limits };
  switch (final.kind) {
    case 'exit': {
      const { exitCode, signal } = final.body;
      if (exitCode !== null) return { status: exitCode, outcome: 'exit', exit: final.body, ...extra };
      return { status: EXIT_STATUS.signal, outcome: 'signal', exit: final.body, message: `the program was killed by ${signal ?? 'a signal'}`, ...extra };
    }
    case 'denied': {
      const d = final.body;
      return { status: EXIT_STATUS.denied, outcome: 'denied', denial: d, message: `denied (${d.code}): ${d.reason}\nvirt-offload: measurement: ${d.measurement}`, ...extra };
    }
    case 'error':
      return { status: EXIT_STATUS.hostError, outcome: 'error', error: final.body, message: `the host refused the request: ${final.body.code}: ${final.body.message}`, ...extra };
    case 'channel':
      return { status: EXIT_STATUS.channel, outcome: 'channel', message: final.message, ...extra };
  }
}
