// File descriptors a child would inherit. Node opens every fd close-on-exec and a spawned child
// gets only the stdio it is given, but an fd the daemon itself inherited without close-on-exec
// (from a shell, a supervisor, a test runner) passes through bwrap into the program: a pipe or
// socket to something on the host. bwrap does not close them, so run() refuses while one is
// open, and the daemon calls closeInheritedFds() once at start-up.
import { closeSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

export interface OpenFd {
  readonly fd: number;
  /** What it points at, e.g. `pipe:[1234]` or a path. */
  readonly target: string;
}

/** fds >= 3 of this process without close-on-exec (from /proc/self/fdinfo). */
export function inheritableFds(): OpenFd[] {
  const out: OpenFd[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return out;
  }
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < 3) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the directory-listing fd itself, closed by now
    }
    const m = /^flags:\s+([0-7]+)$/m.exec(info);
    if (m === null || (parseInt(m[1]!, 8) & O_CLOEXEC) !== 0) continue;
    let target = '?';
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // keep '?'
    }
    out.push({ fd, target });
  }
  return out;
}

/**
 * Close every inherited fd without close-on-exec. For the daemon's start-up: a daemon that
 * was handed fds on purpose (socket activation) must take them before calling this.
 */
export function closeInheritedFds(): OpenFd[] {
  const open = inheritableFds();
  for (const { fd } of open) {
    try {
      closeSync(fd);
    } catch {
      // closed meanwhile
    }
  }
  return open;
}
