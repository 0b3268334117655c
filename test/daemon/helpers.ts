// A guest for the daemon tests: speaks the protocol (lib/protocol) over a VM's unix socket,
// as a node client in a real guest would, and collects what the host sends per request.
import { connect, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  encodeChunks,
  encodeDataEnd,
  encodeHello,
  encodeRequest,
  FrameDecoder,
  type Message,
  type ProtocolLimits,
} from '../../lib/protocol/index.js';
import { run } from '../../testbed/tools.js';

export interface Reply {
  stdout: string;
  stderr: string;
  /** The final reply: EXIT, DENIED or ERROR. */
  final: Message;
  /** Every final reply seen for this id (must be exactly one). */
  finals: number;
}

export class Guest {
  readonly socket: Socket;
  readonly #decoder = new FrameDecoder({ from: 'host' });
  readonly #waiters: Array<(m: Message) => boolean> = [];
  readonly messages: Message[] = [];
  readonly closed: Promise<void>;
  limits: ProtocolLimits | undefined;
  #nextId = 1;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.closed = new Promise((done) => socket.on('close', () => done()));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      for (const e of this.#decoder.feed(chunk)) {
        if (e.kind !== 'message') continue;
        this.messages.push(e.message);
        for (let i = 0; i < this.#waiters.length; i++) {
          if (this.#waiters[i]!(e.message)) this.#waiters.splice(i--, 1);
        }
      }
    });
  }

  static connect(path: string): Promise<Guest> {
    return new Promise((done, fail) => {
      const s = connect(path);
      s.once('error', fail);
      s.once('connect', () => {
        s.off('error', fail);
        done(new Guest(s));
      });
    });
  }

  /** Resolves with the first message (already received or to come) that `match` accepts. */
  waitFor(match: (m: Message) => boolean, timeoutMs = 20_000): Promise<Message> {
    const seen = this.messages.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no matching message within ${timeoutMs} ms; got ${this.messages.map((m) => m.type).join(',')}`)), timeoutMs);
      this.#waiters.push((m) => {
        if (!match(m)) return false;
        clearTimeout(timer);
        done(m);
        return true;
      });
    });
  }

  async hello(nonce = `nonce${Math.random().toString(36).slice(2, 10)}`): Promise<ProtocolLimits> {
    this.socket.write(encodeHello({ role: 'guest', versions: [1], nonce }, 4096));
    const m = await this.waitFor((x) => x.type === 'HELLO' && 'nonce' in x.body && x.body.nonce === nonce);
    if (m.type !== 'HELLO' || m.body.role !== 'host') throw new Error('not a host HELLO');
    this.limits = m.body.limits;
    return m.body.limits;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Start a request (upload `bytes`, or name a measurement); returns its id. */
  send(what: { bytes: Uint8Array } | { measurement: string }, argv: string[] = [], name?: string): number {
    const id = this.#nextId++;
    const maxFrame = this.limits?.maxFrame ?? 4096;
    const extra = name === undefined ? {} : { name };
    if ('bytes' in what) {
      this.socket.write(encodeRequest(id, { argv, env: {}, upload: what.bytes.length, ...extra }, maxFrame));
      for (const f of encodeChunks('DATA', id, what.bytes, maxFrame)) this.socket.write(f);
      this.socket.write(encodeDataEnd(id));
    } else {
      this.socket.write(encodeRequest(id, { argv, env: {}, measurement: what.measurement, ...extra }, maxFrame));
    }
    return id;
  }

  /** Wait for request `id`'s final reply; then a short grace period to catch a second one. */
  async reply(id: number): Promise<Reply> {
    const final = await this.waitFor((m) => m.requestId === id && (m.type === 'EXIT' || m.type === 'DENIED' || m.type === 'ERROR'));
    await new Promise((r) => setTimeout(r, 20));
    const mine = this.messages.filter((m) => m.requestId === id);
    const text = (t: string) => Buffer.concat(mine.flatMap((m) => (m.type === t && 'data' in m ? [m.data] : []))).toString();
    return { stdout: text('STDOUT'), stderr: text('STDERR'), final, finals: mine.filter((m) => m.type === 'EXIT' || m.type === 'DENIED' || m.type === 'ERROR').length };
  }

  async submit(what: { bytes: Uint8Array } | { measurement: string }, argv: string[] = []): Promise<Reply> {
    return this.reply(this.send(what, argv));
  }

  close(): void {
    this.socket.destroy();
  }
}

const GIT_ID = ['-c', 'user.name=Policy Reviewer', '-c', 'user.email=policy@example.invalid', '-c', 'commit.gpgsign=false'];

/** Write the policy files (path → text), commit them, return the commit id. */
export function commitPolicy(repo: string, files: Record<string, string>, message: string): string {
  for (const [path, text] of Object.entries(files)) writeFileSync(join(repo, path), text);
  run('git', ['-C', repo, 'add', '-A']);
  run('git', ['-C', repo, ...GIT_ID, 'commit', '-q', '-m', message]);
  return run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim();
}

/** Send one line-JSON command to a control socket and read the one-line reply. */
export function control(path: string, command: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((done, fail) => {
    const s = connect(path);
    let text = '';
    s.on('error', fail);
    s.on('data', (d: Buffer) => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        s.destroy();
        done(JSON.parse(text.slice(0, nl)) as Record<string, unknown>);
      }
    });
    s.write(`${JSON.stringify(command)}\n`);
  });
}
