// Helpers for the QMP tests: a logger that records, "expect this promise to reject with that
// class", and a fake QMP peer (a real unix socket server) scripted by the test.
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import type { Logger } from '../../lib/qmp/index.js';
import { scratchDir } from '../../testbed/tools.js';

export interface RecordingLogger extends Logger {
  lines: string[];
}

export function recordingLogger(): RecordingLogger {
  const lines: string[] = [];
  return {
    lines,
    debug: (m) => lines.push(`debug ${m}`),
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
  };
}

/** Await `promise`, assert it rejects with an instance of `cls`, return the error. */
export async function rejectsWith<E>(promise: Promise<unknown>, cls: abstract new (...args: never[]) => E, what = ''): Promise<E> {
  try {
    const value = await promise;
    assert.unreachable(`${what} resolved with ${JSON.stringify(value)}, expected ${cls.name}`);
  } catch (err) {
    if (!(err instanceof cls)) {
      throw new assert.Assertion({ message: `${what} rejected with ${String(err)}, expected ${cls.name}`, operator: 'instance', actual: err, expects: cls.name });
    }
    return err;
  }
  throw new Error('unreachable');
}

export const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": []}}\r\n';

/** What QEMU would answer to a message line (the fake's default behaviour for replies). */
export function okReply(line: string, value: unknown = {}): string {
  const { id } = JSON.parse(line) as { id: unknown };
  return `${JSON.stringify({ return: value, id })}\r\n`;
}

export interface FakePeer {
  path: string;
  /** Sockets accepted so far. */
  sockets: Socket[];
  close(): Promise<void>;
}

/**
 * A unix socket server; `onConnection` gets each socket plus a function that resolves with
 * the next line the client sends.
 */
export async function fakePeer(onConnection: (socket: Socket, nextLine: () => Promise<string>) => void | Promise<void>): Promise<FakePeer> {
  const scratch = scratchDir('vo-qmp-fake-');
  const path = join(scratch.dir, 'fake.sock');
  const sockets: Socket[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    let buffered = '';
    const lines: string[] = [];
    const waiting: ((line: string) => void)[] = [];
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const w = waiting.shift();
        if (w !== undefined) w(line);
        else lines.push(line);
      }
    });
    const nextLine = (): Promise<string> => {
      const line = lines.shift();
      return line !== undefined ? Promise.resolve(line) : new Promise((resolve) => waiting.push(resolve));
    };
    void onConnection(socket, nextLine);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      scratch.cleanup();
    },
  };
}

/** A fake peer that greets, accepts qmp_capabilities, then hands over to `then`. */
export function runningPeer(then: (socket: Socket, nextLine: () => Promise<string>) => void | Promise<void>): Promise<FakePeer> {
  return fakePeer(async (socket, nextLine) => {
    socket.write(GREETING);
    socket.write(okReply(await nextLine()));
    await then(socket, nextLine);
  });
}
