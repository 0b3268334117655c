// The byte channel to the host: either a virtio-serial port device (inside a guest) or a
// stream socket (a unix socket standing in for the port in tests and on the host). Reads and
// writes are raw bytes; framing is lib/protocol's business.
//
// A port device differs from a socket in one way that matters (research/platform.md, pitfall
// 7): while the host end is not connected, the guest reads end-of-file, again and again, and
// the host may connect later; a write blocks until it does (Linux virtio_console:
// will_write_block() is true while !host_connected). So a device read that returns nothing is
// reported as an empty chunk ("nothing now"), never as the end of the stream; the client
// decides what it means, and bounds its waits with its own timers.
import { close, closeSync, constants, fstatSync, openSync, read, statSync, type Stats, writeSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ChannelError, PortNotFoundError } from './errors.js';

export interface ByteChannel {
  /** True for a port device: an empty read means the host end is not connected (now). */
  readonly device: boolean;
  /** The next bytes; an empty array when a device has nothing (host not connected); null at the end of a stream. */
  read(): Promise<Uint8Array | null>;
  /** Write all of `bytes` (callers serialize their writes); once it resolves the kernel has them and `bytes` may be reused. */
  write(bytes: Uint8Array): Promise<void>;
  close(): void;
}

const READ_CHUNK = 1 << 16;
/** A stream channel stops reading from the socket while this much is queued and unread. */
const HIGH_WATER = 1 << 20;

/** Open `target`: a path (a character device, FIFO or unix socket) or an already-open duplex stream. */
export async function openChannel(target: string | Duplex): Promise<ByteChannel> {
  if (typeof target !== 'string') return new StreamChannel(target);
  // Synchronous: an O_NONBLOCK open(2) of a device or FIFO does not wait, and each trip
  // through libuv's thread pool costs a guest under TCG about a millisecond.
  let fd: number;
  try {
    fd = openSync(target, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // open(2) of a unix socket fails with ENXIO: a socket path is connected to instead (one
    // syscall for the port itself, where a stat first cost the guest one more).
    if (e.code === 'ENXIO' && isSocket(target)) return connectSocket(target);
    throw openError(target, e);
  }
  const problem = notAPort(fstatSync(fd));
  if (problem !== undefined) {
    closeSync(fd);
    throw new PortNotFoundError(target, `cannot use ${target} as the port: ${problem}`);
  }
  return new DeviceChannel(fd, target);
}

/**
 * Why an opened file cannot be the port, or undefined. libuv aborts the whole process when it
 * is handed an fd that epoll refuses (a regular file, /dev/null…), so only what can be polled
 * gets through: a character device other than the memory devices of major 1 (null, zero,
 * random…), or a FIFO. A unix socket never gets here (open(2) refuses it: ENXIO).
 */
function notAPort(st: Stats): string | undefined {
  if (st.isFIFO()) return undefined;
  if (!st.isCharacterDevice()) return `it is a ${st.isFile() ? 'regular file' : st.isDirectory() ? 'directory' : 'file of another kind'}, not a virtio-serial port (a character device), a FIFO or a unix socket`;
  const major = ((st.rdev >> 8) & 0xfff) | (Math.floor(st.rdev / 2 ** 32) & ~0xfff);
  if (major === 1) return 'it is a memory device (/dev/null, /dev/zero…), not a virtio-serial port';
  return undefined;
}

/** Connect to a unix stream socket at `path` (the `--port PATH` of tests and host-side use). */
export function connectSocket(path: string): Promise<ByteChannel> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(path);
    const onError = (err: Error): void => reject(new ChannelError(`cannot connect to ${path}: ${err.message}`, { cause: err }));
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(new StreamChannel(socket));
    });
  });
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

function openError(path: string, err: NodeJS.ErrnoException): Error {
  const why = err.code === 'EBUSY' ? 'another process has the port open' : err.message;
  return new PortNotFoundError(path, `cannot open port ${path}: ${why}`);
}

class StreamChannel implements ByteChannel {
  readonly device = false;
  readonly #stream: Duplex;
  readonly #chunks: ChunkQueue;

  constructor(stream: Duplex) {
    this.#stream = stream;
    this.#chunks = new ChunkQueue(stream);
  }

  async read(): Promise<Uint8Array | null> {
    const chunk = await this.#chunks.next();
    const error = this.#chunks.error;
    if (chunk === null && error !== undefined) throw new ChannelError(`reading from the host failed: ${error.message}`, { cause: error });
    return chunk;
  }

  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#stream.destroyed || this.#stream.writableEnded) {
        reject(new ChannelError('the channel to the host is closed'));
        return;
      }
      this.#stream.write(bytes, (err) => (err == null ? resolve() : reject(new ChannelError(`writing to the host failed: ${err.message}`, { cause: err }))));
    });
  }

  close(): void {
    this.#stream.destroy();
  }
}

/** Waits between retries of a port read or write that would block: short first, for latency. */
const BACKOFF_MS = [0, 1, 1, 2, 4, 8, 16, 20] as const;

/**
 * A port device, opened O_NONBLOCK. Blocking reads would sit in libuv's thread pool, and a
 * process with a thread blocked in read(2) cannot exit (libuv joins its threads at exit).
 *
 * Reads are event-driven while the host end is connected: the fd is handed to libuv as a pipe
 * (virtio_console implements poll, so epoll wakes us when the host's bytes arrive). Polling
 * with a growing wait instead added up to half the host's reply time to every round trip
 * (a reply after 9 ms was seen after 16), and kept the guest's CPU busy meanwhile, which under
 * TCG is the host's CPU too. The port reads end-of-file while the host end is not connected:
 * libuv takes that for the end of the stream and stops, so from then on (and where Node has no
 * pipe binding) reads that would block are retried after a short, growing wait, as are writes
 * (a write waits in the kernel until the host connects; as a libuv stream it would spin on
 * the port's POLLHUP meanwhile).
 */
class DeviceChannel implements ByteChannel {
  readonly device = true;
  readonly #fd: number;
  readonly #path: string;
  #closed = false;
  /**
   * The fd in libuv's loop (it owns the fd from then on); undefined where Node has no pipe
   * binding. Made at the first read, not at open: setting it up costs a guest under TCG about
   * a millisecond, and a client that writes first (HELLO and REQUEST) lets the host work
   * meanwhile. Bytes the host sends before then wait in the port (it is open).
   */
  #events: EventReader | undefined;
  /** Reads go through #events until its first end-of-file, then they are polled. */
  #eventDriven = true;

  constructor(fd: number, path: string) {
    this.#fd = fd;
    this.#path = path;
  }

  async read(): Promise<Uint8Array | null> {
    if (this.#closed) return null;
    if (this.#eventDriven && this.#events === undefined) {
      this.#events = EventReader.open(this.#fd);
      this.#eventDriven = this.#events !== undefined;
    }
    if (this.#eventDriven) {
      const chunk = await this.#events!.read();
      if (this.#closed) return null;
      if (chunk !== 'eof') return chunk;
      // The host end is not connected (now): nothing to read; poll from here on.
      this.#eventDriven = false;
      return new Uint8Array(0);
    }
    const buf = new Uint8Array(READ_CHUNK);
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) return null;
      const n = await this.#io('read', (done) => read(this.#fd, buf, 0, buf.length, null, done));
      if (n !== undefined) return buf.subarray(0, n);
      await pause(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!);
    }
  }

  /**
   * Writes are synchronous write(2) calls on the O_NONBLOCK fd: virtio_console queues the bytes
   * (at most 32 KiB a call) and returns at once, or fails with EAGAIN when its virtqueue is full
   * or the host is not connected, and then we wait and retry. A trip through libuv's thread
   * pool per 32 KiB instead cost the guest under TCG more than the copy itself (an 8 MiB upload
   * is 256 of them).
   */
  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    for (let attempt = 0; at < bytes.length; ) {
      if (this.#closed) throw new ChannelError(`${this.#path} is closed`);
      const n = this.#writeNow(bytes, at);
      if (n === undefined) {
        await pause(BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)]!);
        continue;
      }
      at += n;
      attempt = 0;
    }
  }

  /** One write(2): bytes written, or undefined when it would block. */
  #writeNow(bytes: Uint8Array, at: number): number | undefined {
    try {
      return writeSync(this.#fd, bytes, at, bytes.length - at);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EAGAIN' || e.code === 'EWOULDBLOCK') return undefined;
      throw new ChannelError(`write of ${this.#path} failed: ${e.message}`, { cause: e });
    }
  }

  /** One read: bytes done, or undefined when it would block. */
  #io(what: string, op: (done: (err: NodeJS.ErrnoException | null, n: number) => void) => void): Promise<number | undefined> {
    return new Promise((resolve, reject) => {
      op((err, n) => {
        if (err === null) resolve(n);
        else if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') resolve(undefined);
        else reject(new ChannelError(`${what} of ${this.#path} failed: ${err.message}`, { cause: err }));
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // The libuv handle owns the fd once it has it: closing it closes the fd (once).
    if (this.#events !== undefined) this.#events.close();
    else close(this.#fd, () => undefined);
  }
}

interface PipeHandle {
  open(fd: number): number;
}
interface PipeBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

/**
 * Node's pipe binding, the one way to get an fd of a character device into libuv's event loop
 * (net.Socket({fd}) refuses anything but pipes and sockets). Undefined where it is missing.
 */
function pipeBinding(): PipeBinding | undefined {
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding('pipe_wrap') as Partial<PipeBinding> | undefined;
    return typeof binding?.Pipe === 'function' && typeof binding.constants?.SOCKET === 'number' ? (binding as PipeBinding) : undefined;
  } catch {
    return undefined;
  }
}

/** Reads of an fd through libuv (epoll): chunks as they arrive, 'eof' once at the end. */
class EventReader {
  readonly #socket: Socket;
  // A read error ends event-driven reads like the end does; the polled read that follows reports it.
  readonly #chunks: ChunkQueue;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#chunks = new ChunkQueue(socket);
  }

  static open(fd: number): EventReader | undefined {
    const binding = pipeBinding();
    if (binding === undefined) return undefined;
    const handle = new binding.Pipe(binding.constants.SOCKET);
    if (handle.open(fd) !== 0) return undefined;
    // The end of what we read is not the end of the fd: allowHalfOpen keeps Node from ending
    // the writable side (shutdown(2)), and that side, open but never written (writes go
    // through the fd), keeps Node from destroying the handle, which would close the fd.
    return new EventReader(new Socket({ handle, readable: true, writable: true, allowHalfOpen: true } as ConstructorParameters<typeof Socket>[0]));
  }

  async read(): Promise<Uint8Array | 'eof'> {
    return (await this.#chunks.next()) ?? 'eof';
  }

  close(): void {
    this.#socket.destroy();
    this.#chunks.end();
  }
}

/**
 * What a readable stream delivers, queued until read: chunks in order, then null once it ended
 * (closed or failed: `error` says which). Past HIGH_WATER unread bytes the stream is paused,
 * and resumed when half of them are read.
 */
class ChunkQueue {
  readonly #stream: Duplex;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  /** The stream's error, if it ended with one. */
  error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(stream: Duplex) {
    this.#stream = stream;
    stream.on('data', (chunk: Buffer) => {
      this.#queue.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#queued += chunk.byteLength;
      if (this.#queued > HIGH_WATER) stream.pause();
      this.#notify();
    });
    stream.on('end', () => this.end());
    stream.on('close', () => this.end());
    stream.on('error', (err) => {
      this.error ??= err;
      this.end();
    });
  }

  /** The next chunk, or null once the stream ended and everything queued was read. */
  async next(): Promise<Uint8Array | null> {
    for (;;) {
      const chunk = this.#queue.shift();
      if (chunk !== undefined) {
        this.#queued -= chunk.length;
        if (this.#queued <= HIGH_WATER / 2 && this.#stream.isPaused()) this.#stream.resume();
        return chunk;
      }
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** No more chunks will come (also when the owner closes the stream). */
  end(): void {
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}
