// The exec helper process (helper-server.ts says why it exists): started by the daemon as
// `node <this file>` with a pipe on stdin and stdout, the daemon's only channel to it. It ends
// when the daemon closes that pipe and its runs have finished.
import { Socket } from 'node:net';
import { hostCgroups, removeStaleRuns } from './cgroup.js';
import { closeInheritedFds } from './fds.js';
import { serveExecHelper } from './helper-server.js';

// An fd this process inherited without close-on-exec would pass through bwrap into every
// program (fds.ts); run() refuses while one is open, so close them before the first run.
const closed = closeInheritedFds();
// Ctrl-C in the terminal of `virt-offload serve` reaches the whole process group: the daemon
// decides when this process ends, by closing its input.
process.on('SIGINT', () => {});
// Sockets over fds 0 and 1 rather than process.stdin/stdout, whose pipe writes are synchronous
// on Linux and would stall every run while the daemon is slow to read.
const input = new Socket({ fd: 0, readable: true, writable: false });
const output = new Socket({ fd: 1, readable: false, writable: true });
const server = serveExecHelper(input, output);
for (const fd of closed) server.log('warn', `closed inherited fd ${fd.fd} (${fd.target})`);
// Runs are named after the process that made their cgroup: a helper that died left its own.
const layout = hostCgroups();
if (layout !== undefined) for (const dir of removeStaleRuns(layout)) server.log('info', `removed the cgroup of a run of a dead exec helper: ${dir}`);
void server.done.then(() => {
  output.end();
  // Nothing should hold the loop open now; if something does, do not linger without a daemon.
  setTimeout(() => process.exit(0), 2000).unref();
});
