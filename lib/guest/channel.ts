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
import { close, open, read, stat, write } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ChannelError, PortNotFoundError } from './errors.js';

export interface ByteChannel {
  /** True for a port device: an empty read means the host end is not connected (now). */
  readonly device: boolean;
  /** The next bytes; an empty array when a device has nothing (host not connected); null at the end of a stream. */
  read(): Promise<Uint8Array | null>;
  /** Write all of `bytes` (callers serialize their writes). */
  write(bytes: Uint8Array): Promise<void>;
  close(): void;
}

const READ_CHUNK = 1 << 16;
/** A stream channel stops reading from the socket while this much is queued and unread. */
const HIGH_WATER = 1 << 20;

/** Open `target`: a path (a character device, FIFO or unix socket) or an already-open duplex stream. */
export async function openChannel(target: string | Duplex): Promise<ByteChannel> {
  if (typeof target !== 'string') return new StreamChannel(target);
  // open(2) of a unix socket fails (ENXIO): a socket path is connected to instead.
  const socket = await new Promise<boolean>((resolve, reject) => {
    stat(target, (err, st) => (err === null ? resolve(st.isSocket()) : reject(openError(target, err))));
  });
  if (socket) return connectSocket(target);
  const fd = await new Promise<number>((resolve, reject) => {
    open(target, 'r+', (err, fd) => (err === null ? resolve(fd) : reject(openError(target, err))));
  });
  return new DeviceChannel(fd, target);
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

function openError(path: string, err: NodeJS.ErrnoException): Error {
  const why = err.code === 'EBUSY' ? 'another process has the port open' : err.message;
  return new PortNotFoundError(path, `cannot open port ${path}: ${why}`);
}

class StreamChannel implements ByteChannel {
  readonly device = false;
  readonly #stream: Duplex;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(stream: Duplex) {
    this.#stream = stream;
    stream.on('data', (chunk: Buffer) => {
      this.#queue.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#queued += chunk.byteLength;
      if (this.#queued > HIGH_WATER) stream.pause();
      this.#notify();
    });
    stream.on('end', () => this.#finish());
    stream.on('close', () => this.#finish());
    stream.on('error', (err) => {
      this.#error ??= err;
      this.#finish();
    });
  }

  #finish(): void {
    this.#ended = true;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      const chunk = this.#queue.shift();
      if (chunk !== undefined) {
        this.#queued -= chunk.length;
        if (this.#queued <= HIGH_WATER / 2 && this.#stream.isPaused()) this.#stream.resume();
        return chunk;
      }
      if (this.#error !== undefined) throw new ChannelError(`reading from the host failed: ${this.#error.message}`, { cause: this.#error });
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
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

class DeviceChannel implements ByteChannel {
  readonly device = true;
  readonly #fd: number;
  readonly #path: string;
  #closed = false;

  constructor(fd: number, path: string) {
    this.#fd = fd;
    this.#path = path;
  }

  read(): Promise<Uint8Array | null> {
    const buf = new Uint8Array(READ_CHUNK);
    return new Promise((resolve, reject) => {
      read(this.#fd, buf, 0, buf.length, null, (err, n) => {
        if (err !== null) reject(new ChannelError(`reading ${this.#path} failed: ${err.message}`, { cause: err }));
        else resolve(buf.subarray(0, n));
      });
    });
  }

  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) {
      at += await new Promise<number>((resolve, reject) => {
        write(this.#fd, bytes, at, bytes.length - at, null, (err, n) => {
          if (err !== null) reject(new ChannelError(`writing ${this.#path} failed: ${err.message}`, { cause: err }));
          else resolve(n);
        });
      });
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    close(this.#fd, () => undefined);
  }
}
