// A fake host for the guest client's tests: lib/protocol's HostSession and encoders behind a
// unix stream socket, with the daemon's part (measure, decide, run) scripted by each test.
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  encodeMessage,
  FrameDecoder,
  type HostAction,
  HostSession,
  type Message,
  type ProtocolLimits,
  type RunRequest,
} from '../../lib/protocol/index.js';
import { scratchDir } from '../../testbed/tools.js';

// The same small limits as the protocol tests.
import { LIMITS } from '../protocol/helpers.js';
export { LIMITS };

export interface RunContext {
  readonly request: RunRequest;
  readonly upload: Uint8Array;
  /** sha256 of the upload, or the request's measurement. */
  readonly measurement: string;
  stdout(data: string | Uint8Array): void;
  stderr(data: string | Uint8Array): void;
  exit(exitCode: number | null, signal?: string | null): void;
  deny(code: string, reason: string): void;
  error(code: string, message: string): void;
  send(message: Message): void;
  /** Drop the connection (a host that dies mid-run). */
  disconnect(): void;
}

export interface FakeHostOptions {
  readonly limits?: ProtocolLimits;
  /** Bytes arriving within this many ms of a connection are dropped: the host end "not connected yet". */
  readonly deafMs?: number;
  readonly onRun?: (ctx: RunContext) => void;
  /** Bytes written as soon as a guest connects (leftovers of an earlier client's conversation). */
  readonly preamble?: Uint8Array;
  /**
   * Bytes the host has taken in before the guest's first byte (their messages acted on): on a
   * real port the host's side outlives a client, so a client killed mid-frame leaves the next
   * one's HELLO inside its frame, and its session current.
   */
  readonly leftover?: Uint8Array;
  /** Bytes arriving within this many ms of a connection are read only then (a slow host: late, nothing lost). */
  readonly holdMs?: number;
  /** Called with each host HELLO as it is sent (when it went out, relative to what was received). */
  readonly onHello?: (nonce: string, receivedSoFar: readonly Message[]) => void;
}

export interface FakeHost {
  readonly path: string;
  /** Every message decoded from guests, in order. */
  readonly received: Message[];
  /** Session actions of type abort/ignored, for assertions. */
  readonly actions: HostAction[];
  /** Bytes dropped while deaf. */
  dropped: number;
  /** Bytes the decoder skipped as garbage (a resync marker is RESYNC_BYTES). */
  garbage: number;
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

const enc = new TextEncoder();
const bytesOf = (d: string | Uint8Array): Uint8Array => (typeof d === 'string' ? enc.encode(d) : d);

export async function startFakeHost(options: FakeHostOptions = {}): Promise<FakeHost> {
  const limits = options.limits ?? LIMITS;
  const { dir, cleanup } = scratchDir('vo-guest-');
  const path = join(dir, 'port.sock');
  const sockets = new Set<Socket>();
  const host: FakeHost = {
    path,
    received: [],
    actions: [],
    dropped: 0,
    garbage: 0,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          cleanup();
          resolve();
        });
      }),
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    host.connections++;
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const started = Date.now();
    if (options.preamble !== undefined) socket.write(options.preamble);
    const decoder = new FrameDecoder({ from: 'guest', maxFrame: limits.maxFrame });
    const session = new HostSession({ limits, software: 'fake-host/1' });
    // What the host read of an earlier client: its messages count (its session, its requests).
    const takeLeftover = (): void => {
      if (options.leftover === undefined) return;
      for (const event of decoder.feed(options.leftover)) if (event.kind === 'message') act(session.onMessage(event.message));
    };
    const uploads = new Map<number, { request: RunRequest; chunks: Uint8Array[] }>();
    const write = (messages: readonly Message[]): void => {
      for (const m of messages) {
        if (m.type === 'HELLO' && m.body.role === 'host') options.onHello?.(m.body.nonce, [...host.received]);
        if (!socket.destroyed) socket.write(encodeMessage(m));
      }
    };
    const act = (actions: readonly HostAction[]): void => {
      for (const a of actions) {
        switch (a.type) {
          case 'send': write([a.message]); break;
          case 'begin': uploads.set(a.ticket, { request: a.request, chunks: [] }); break;
          case 'data': uploads.get(a.ticket)?.chunks.push(a.chunk); break;
          case 'run': {
            const u = uploads.get(a.ticket)!;
            const upload = Buffer.concat(u.chunks);
            const measurement = u.request.measurement ?? `sha256:${createHash('sha256').update(upload).digest('hex')}`;
            const ticket = a.ticket;
            const ctx: RunContext = {
              request: u.request,
              upload,
              measurement,
              stdout: (d) => write(session.output(ticket, 'STDOUT', bytesOf(d))),
              stderr: (d) => write(session.output(ticket, 'STDERR', bytesOf(d))),
              exit: (exitCode, signal = null) =>
                write(session.finish(ticket, {
                  type: 'EXIT',
                  body: { exitCode, signal, durationMs: 1, limitsHit: { wall: false, memory: false, pids: false, output: false }, measurement, name: 'tool', version: '1' },
                })),
              deny: (code, reason) => write(session.finish(ticket, { type: 'DENIED', body: { measurement, code, reason } })),
              error: (code, message) => write(session.finish(ticket, { type: 'ERROR', body: { code, message } })),
              send: (m) => write([m]),
              disconnect: () => socket.destroy(),
            };
            (options.onRun ?? ((c: RunContext) => c.exit(0)))(ctx);
            break;
          }
          default: host.actions.push(a);
        }
      }
    };
    takeLeftover();
    const held: Buffer[] = [];
    const take = (chunk: Buffer): void => {
      for (const event of decoder.feed(chunk)) {
        if (event.kind === 'message') {
          host.received.push(event.message);
          act(session.onMessage(event.message));
        } else if (event.kind === 'error') act(session.onError(event.error));
        else host.garbage += event.length;
      }
    };
    if (options.holdMs !== undefined) {
      setTimeout(() => {
        for (const chunk of held.splice(0)) take(chunk);
      }, options.holdMs);
    }
    socket.on('data', (chunk: Buffer) => {
      if (Date.now() - started < (options.deafMs ?? 0)) {
        host.dropped += chunk.length;
        return;
      }
      if (options.holdMs !== undefined && Date.now() - started < options.holdMs) {
        held.push(chunk);
        return;
      }
      take(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return host;
}

/** A writable that keeps what it is given. */
export function collector(): { stream: Writable; text: () => string; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const stream = new (class extends Writable {
    override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
      chunks.push(Buffer.from(chunk));
      done();
    }
  })();
  return { stream, text: () => Buffer.concat(chunks).toString('utf8'), bytes: () => Buffer.concat(chunks) };
}
