// The exec helper's side of its channel to the daemon: each 'run' message becomes a run() in
// this process, its start, output and end go back as messages, an 'abort' aborts it.
//
// Why a separate process runs the sandboxes: fork(2) copies the page tables of the forking
// process, so spawning bwrap from the daemon cost time in proportion to the daemon's memory
// (1.1–1.4 ms at 16 MB of anonymous memory, 2.5–3.6 ms at 90–110 MB after a few 8 MiB
// uploads, whose freed buffers malloc keeps resident), and blocked the daemon's event loop,
// every VM's connection, for that long on each run. This process holds no upload and no
// connection, so its forks stay cheap, and a fork stalls only the runs, not the guests' I/O.
//
// When the daemon goes (end of input, or a write to it fails) every run is aborted, which
// kills its sandbox; bwrap's --die-with-parent covers the case where this process dies first.
import type { Readable, Writable } from 'node:stream';
import { ExecError } from './errors.js';
import { checkToHelper, encodeHelperMessage, type FromHelper, HelperMessageReader, type HelperErrorFacts } from './helper-wire.js';
import { run as runLocal, type RunOptions, type RunResult } from './run.js';

export interface ExecHelperServer {
  /** Resolves once the input ended and every run it started has finished. */
  readonly done: Promise<void>;
  /** Send a line to the daemon's log. */
  readonly log: (level: 'info' | 'warn' | 'error', line: string) => void;
}

export function serveExecHelper(input: Readable, output: Writable, runImpl: (o: RunOptions) => Promise<RunResult> = runLocal): ExecHelperServer {
  const runs = new Map<number, AbortController>();
  const reader = new HelperMessageReader('exec helper input');
  let broken = false;
  let ended = false;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const settle = () => {
    if (ended && runs.size === 0) finish();
  };
  const send = (m: FromHelper) => {
    if (broken) return;
    output.write(encodeHelperMessage(m));
  };
  const log = (level: 'info' | 'warn' | 'error', line: string) => send({ t: 'log', level, line });
  const stopAll = (why: string) => {
    if (runs.size > 0) log('warn', `${why}: aborting ${runs.size} run(s)`);
    for (const c of runs.values()) c.abort();
  };
  output.on('error', (err) => {
    broken = true;
    stopAll(`cannot write to the daemon (${err.message})`);
  });

  const start = (id: number, request: Extract<ReturnType<typeof checkToHelper>, { t: 'run' }>['request']) => {
    if (runs.has(id)) {
      send({ t: 'fail', id, error: { kind: 'bad-request', message: `run id ${id} is already running in the exec helper` } });
      return;
    }
    const abort = new AbortController();
    runs.set(id, abort);
    runImpl({
      ...request,
      signal: abort.signal,
      onStart: (info) => send({ t: 'start', id, info }),
      onStdout: (data) => send({ t: 'out', id, fd: 1, data }),
      onStderr: (data) => send({ t: 'out', id, fd: 2, data }),
    }).then(
      ({ stdout: _o, stderr: _e, ...result }) => send({ t: 'done', id, result }),
      (err: unknown) => send({ t: 'fail', id, error: errorFacts(err) }),
    ).finally(() => {
      runs.delete(id);
      settle();
    });
  };

  input.on('data', (chunk: Buffer) => {
    let messages: unknown[];
    try {
      messages = reader.push(chunk);
    } catch (err) {
      // The stream cannot be resynchronized: stop reading, as if the daemon had gone.
      log('error', `unreadable input from the daemon (${(err as Error).message}); stopping`);
      input.destroy();
      return;
    }
    for (const raw of messages) {
      const m = checkToHelper(raw);
      if (typeof m === 'string') {
        log('error', `refused a message from the daemon: ${m}`);
        continue;
      }
      if (m.t === 'abort') runs.get(m.id)?.abort();
      else start(m.id, m.request);
    }
  });
  const onEnd = () => {
    if (ended) return;
    ended = true;
    stopAll('the daemon went away');
    settle();
  };
  input.on('end', onEnd);
  input.on('close', onEnd);
  input.on('error', onEnd);
  send({ t: 'ready', pid: process.pid });
  return { done, log };
}

function errorFacts(err: unknown): HelperErrorFacts {
  if (err instanceof ExecError) {
    return {
      kind: err.kind,
      message: err.message,
      ...(err.path === undefined ? {} : { path: err.path }),
      ...(err.measurement === undefined ? {} : { measurement: err.measurement }),
      ...(err.actual === undefined ? {} : { actual: err.actual }),
    };
  }
  return { kind: 'helper-failed', message: `the exec helper failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}` };
}
