// Exit codes and top-level error reporting shared by every subcommand.
import { UsageError, VirtOffloadError } from '../lib/errors.js';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;
/** 128 + SIGPIPE, as a shell reports a program that wrote into a pipe its reader closed. */
export const EXIT_STDOUT_CLOSED = 141;

/** Print an error the user can act on and return the exit code it maps to. */
export function reportFailure(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`virt-offload: ${err.message}\n(run with --help for usage)\n`);
    return EXIT.usage;
  }
  if (err instanceof VirtOffloadError) {
    process.stderr.write(`virt-offload: ${err.message}\n`);
    return EXIT.failed;
  }
  // Not one of ours: a bug. Show the stack so it can be reported.
  process.stderr.write(`virt-offload: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT.failed;
}

/** `virt-offload … | head` closes the pipe early: that is the reader's choice, not an error. */
export function endQuietlyOnClosedPipe(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
