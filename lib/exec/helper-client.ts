// The daemon's side of the exec helper process (helper-server.ts says why runs happen in
// another process): ExecHelper.run() takes run()'s options and gives run()'s result, errors
// included, while the fork of bwrap, the cgroup work and the supervision happen in the helper.
//
// The helper is started once, while the daemon is still small. When it dies, every run it had
// fails with ExecError helper-failed (its sandboxes die with it: bwrap's --die-with-parent),
// and the next run starts a new one.
import { spawn, type ChildProcess } from 'node:child_process';
import { ExecError, type ExecErrorKind } from './errors.js';
import { checkFromHelper, encodeHelperMessage, type FromHelper, HelperMessageReader, type ToHelper } from './helper-wire.js';
import type { RunOptions, RunResult } from './run.js';

export interface ExecHelperOptions {
  /** The helper's entry script (dist/lib/exec/helper-entry.js, or the CLI's dist/exec-helper.cjs). */
  readonly script: string;
  /** Default: the node running this code. */
  readonly nodePath?: string;
  /** Where the helper's log lines and its restarts are reported. */
  readonly log?: (level: 'info' | 'warn' | 'error', line: string) => void;
  /** How long a start may take before it is given up. Default 10 s. */
  readonly startTimeoutMs?: number;
}

const KINDS: ReadonlySet<string> = new Set<ExecErrorKind>(['tampered', 'not-runnable', 'bad-request', 'no-sandbox', 'sandbox-failed', 'cgroup', 'too-large', 'leaky-fd', 'helper-failed']);

interface PendingRun {
  readonly options: RunOptions;
  readonly stdout: Buffer[];
  readonly stderr: Buffer[];
  readonly resolve: (r: RunResult) => void;
  readonly reject: (e: unknown) => void;
  readonly cleanup: () => void;
}

export class ExecHelper {
  readonly #o: ExecHelperOptions;
  #child: ChildProcess | undefined;
  #ready: Promise<ChildProcess> | undefined;
  readonly #pending = new Map<number, PendingRun>();
  #nextId = 1;
  #starts = 0;
  #pid: number | undefined;
  #closing = false;

  private constructor(options: ExecHelperOptions) {
    this.#o = options;
  }

  /** Start the helper and wait until it is ready; rejects with ExecError helper-failed. */
  static async start(options: ExecHelperOptions): Promise<ExecHelper> {
    const helper = new ExecHelper(options);
    await helper.#ensure();
    return helper;
  }

  /** pid of the running helper (undefined between a death and the next run). */
  get pid(): number | undefined {
    return this.#child === undefined ? undefined : this.#pid;
  }

  /** How many helper processes were started (1 + restarts). */
  get starts(): number {
    return this.#starts;
  }

  /** run() in the helper process: the same options, result and errors. */
  async run(options: RunOptions): Promise<RunResult> {
    if (this.#closing) throw new ExecError('helper-failed', 'the exec helper is shut down');
    const child = await this.#ensure();
    const { onStdout: _o, onStderr: _e, onStart: _s, signal, ...request } = options;
    const id = this.#nextId++;
    return new Promise<RunResult>((resolve, reject) => {
      const onAbort = () => this.#send(child, { t: 'abort', id });
      const cleanup = () => signal?.removeEventListener('abort', onAbort);
      let message: Buffer;
      try {
        message = encodeHelperMessage({ t: 'run', id, request });
      } catch (err) {
        reject(new ExecError('helper-failed', `cannot hand the run to the exec helper: ${(err as Error).message}`, { cause: err }));
        return;
      }
      this.#pending.set(id, { options, stdout: [], stderr: [], resolve, reject, cleanup });
      child.stdin!.write(message);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Close the helper's input and wait for it to end its runs and exit (SIGKILL after `graceMs`). */
  async close(graceMs = 5000): Promise<void> {
    this.#closing = true;
    const child = this.#child;
    if (child === undefined) return;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  #ensure(): Promise<ChildProcess> {
    this.#ready ??= this.#spawn().catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  #spawn(): Promise<ChildProcess> {
    const nodePath = this.#o.nodePath ?? process.execPath;
    const what = `${nodePath} ${this.#o.script}`;
    this.#starts++;
    return new Promise<ChildProcess>((resolve, reject) => {
      const child = spawn(nodePath, [this.#o.script], { stdio: ['pipe', 'pipe', 'inherit'], cwd: '/' });
      let ready = false;
      const fail = (why: string) => {
        if (ready) return;
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new ExecError('helper-failed', `cannot start the exec helper (${what}): ${why}`));
      };
      const timer = setTimeout(() => fail(`not ready after ${this.#o.startTimeoutMs ?? 10_000} ms`), this.#o.startTimeoutMs ?? 10_000);
      const reader = new HelperMessageReader('exec helper output');
      child.on('error', (err) => fail(err.message));
      child.stdin!.on('error', () => {
        // It died: 'exit' says how, and fails its runs.
      });
      child.stdout!.on('data', (chunk: Buffer) => {
        let messages: unknown[];
        try {
          messages = reader.push(chunk);
        } catch (err) {
          this.#log('error', `exec helper ${child.pid}: ${(err as Error).message}; stopping it`);
          child.kill('SIGKILL');
          return;
        }
        for (const raw of messages) {
          const m = checkFromHelper(raw);
          if (typeof m === 'string') {
            this.#log('error', `exec helper ${child.pid}: refused a message (${m}); stopping it`);
            child.kill('SIGKILL');
            return;
          }
          if (m.t === 'ready') {
            if (ready) continue;
            ready = true;
            clearTimeout(timer);
            this.#child = child;
            this.#pid = m.pid;
            if (this.#starts > 1) this.#log('info', `exec helper started again (pid ${m.pid}, start ${this.#starts})`);
            resolve(child);
          } else if (ready) {
            this.#deliver(m);
          }
        }
      });
      child.on('exit', (code, signal) => {
        const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
        if (!ready) {
          fail(`it ended (${how}) before it was ready`);
          return;
        }
        if (this.#child === child) {
          this.#child = undefined;
          this.#ready = undefined;
        }
        const lost = [...this.#pending.values()];
        this.#pending.clear();
        if (!this.#closing || lost.length > 0) this.#log(this.#closing ? 'warn' : 'error', `exec helper ${child.pid} ended (${how}) with ${lost.length} run(s) in progress; the next run starts a new one`);
        for (const p of lost) {
          p.cleanup();
          p.reject(new ExecError('helper-failed', `the exec helper (pid ${child.pid}) ended (${how}) during the run; its sandbox ended with it`));
        }
      });
    });
  }

  #deliver(m: Exclude<FromHelper, { t: 'ready' }>): void {
    if (m.t === 'log') {
      this.#log(m.level, `exec helper ${this.#pid}: ${m.line}`);
      return;
    }
    const p = this.#pending.get(m.id);
    if (p === undefined) return; // a run the daemon no longer waits for
    switch (m.t) {
      case 'start':
        this.#call(() => p.options.onStart?.(m.info));
        break;
      case 'out': {
        const chunk = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
        (m.fd === 1 ? p.stdout : p.stderr).push(chunk);
        this.#call(() => (m.fd === 1 ? p.options.onStdout : p.options.onStderr)?.(chunk));
        break;
      }
      case 'done':
        this.#pending.delete(m.id);
        p.cleanup();
        p.resolve({ ...m.result, stdout: Buffer.concat(p.stdout), stderr: Buffer.concat(p.stderr) });
        break;
      case 'fail': {
        this.#pending.delete(m.id);
        p.cleanup();
        const e = m.error;
        const kind: ExecErrorKind = KINDS.has(e.kind) ? e.kind : 'helper-failed';
        p.reject(
          new ExecError(kind, e.message, {
            ...(e.path === undefined ? {} : { path: e.path }),
            ...(e.measurement === undefined ? {} : { measurement: e.measurement }),
            ...(e.actual === undefined ? {} : { actual: e.actual }),
          }),
        );
        break;
      }
    }
  }

  #send(child: ChildProcess, m: ToHelper): void {
    if (this.#child !== child) return;
    child.stdin!.write(encodeHelperMessage(m));
  }

  /** A throwing callback must not stop the messages of the other runs. */
  #call(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.#log('error', `a run callback threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }

  #log(level: 'info' | 'warn' | 'error', line: string): void {
    this.#o.log?.(level, line);
  }
}
