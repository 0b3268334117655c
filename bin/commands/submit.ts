// `virt-offload submit` inside a guest: options → lib/guest → the remote program's exit status.
// The port is a name (found under /dev/virtio-ports or through sysfs) or a path (a device,
// or a unix socket standing in for the port).
import { basename } from 'node:path';
import { UsageError } from '../../lib/errors.js';
import { DEFAULT_PORT_NAME, submit } from '../../lib/guest/index.js';
import { BINARY_NAME } from '../../lib/protocol/index.js';
import { EXIT_STDOUT_CLOSED, reportFailure } from '../exit.js';

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** `operands`: FILE then ARGS, or only ARGS with --measurement. */
export async function runSubmit(operands: string[], opts: Record<string, unknown>): Promise<number> {
  try {
    const measurement = str(opts.measurement);
    let name = str(opts.name);
    let file: string | undefined;
    let argv = operands;
    if (measurement === undefined) {
      if (operands.length === 0) throw new UsageError('give the FILE to upload, or --measurement sha256:… for an installed binary');
      [file, ...argv] = operands as [string, ...string[]];
      // The host logs what the guest calls the binary; the file's name is a fair default.
      if (name === undefined && BINARY_NAME.test(basename(file))) name = basename(file);
    }
    let waitMs: number | undefined;
    if (opts.wait !== undefined) {
      const seconds = Number(opts.wait);
      if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) throw new UsageError(`--wait ${String(opts.wait)}: expected seconds, more than 0 and at most 86400`, '--wait');
      waitMs = Math.round(seconds * 1000);
    }
    const portOption = str(opts.port) ?? DEFAULT_PORT_NAME;
    const port = portOption.includes('/') ? portOption : { name: portOption };
    // Ctrl-C: CANCEL the request so the host stops the program, then exit 130.
    const ac = new AbortController();
    const onSigint = (): void => ac.abort();
    process.once('SIGINT', onSigint);
    process.once('SIGTERM', onSigint);
    // `submit … | head`: when our stdout closes, CANCEL too (the host would otherwise run the
    // program to its wall limit for nobody), instead of the CLI's usual quiet exit on EPIPE.
    let stdoutClosed = false;
    const quietExit = process.stdout.listeners('error');
    process.stdout.removeAllListeners('error');
    const onStdoutError = (err: NodeJS.ErrnoException): void => {
      if (err.code !== 'EPIPE') throw err;
      stdoutClosed = true;
      ac.abort();
    };
    process.stdout.on('error', onStdoutError);
    try {
      const result = await submit({
        port,
        ...(file === undefined ? {} : { file }),
        ...(measurement === undefined ? {} : { measurement }),
        ...(name === undefined ? {} : { name }),
        argv,
        stdout: process.stdout,
        stderr: process.stderr,
        signal: ac.signal,
        ...(opts.resync === true ? { resyncFirst: true } : {}),
        ...(waitMs === undefined ? {} : { timeouts: { handshakeMs: waitMs } }),
      });
      // stdout closed by its reader (EPIPE): the request was cancelled on the host; 141 (128 +
      // SIGPIPE) as a shell reports a program that wrote into a closed pipe.
      return stdoutClosed ? EXIT_STDOUT_CLOSED : result.status;
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
      process.stdout.off('error', onStdoutError);
      for (const l of quietExit) process.stdout.on('error', l as (err: Error) => void);
    }
  } catch (err) {
    return reportFailure(err);
  }
}
