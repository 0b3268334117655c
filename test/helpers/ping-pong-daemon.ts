// A stand-in for the daemon in hot-plug tests: listens on the unix socket QEMU's chardev
// connects to, and answers each line `ping X` with `pong X` (the guest side echoes through its
// port). Used by test/e2e/hotplug (QMP route) and test/e2e/libvirt-hotplug (libvirt route).
import { createServer, type Server, type Socket } from 'node:net';

/** The "daemon": listens on a unix socket; answers each line `ping X` with `pong X`. */
export interface PingPongDaemon {
  socketPath: string;
  server: Server;
  /** Connections accepted so far. */
  accepted(): number;
  /** Resolves once `n` connections have been accepted. */
  waitAccepted(n: number, timeoutMs: number): Promise<void>;
  lines: string[];
  open(): Promise<number>;
  /** Stop listening and drop every connection (a daemon that died). */
  close(): Promise<void>;
}

export async function startPingPongDaemon(socketPath: string): Promise<PingPongDaemon> {
  let accepted = 0;
  const lines: string[] = [];
  const wakers = new Set<() => void>();
  const sockets = new Set<Socket>();
  const server = createServer((sock: Socket) => {
    accepted++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    for (const w of [...wakers]) w();
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        const m = /^ping (.*)$/.exec(line);
        if (m) sock.write(`pong ${m[1]}\n`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  const waitAccepted = (n: number, timeoutMs: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (accepted < n) return;
        clearTimeout(timer);
        wakers.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        wakers.delete(check);
        reject(new Error(`QEMU did not connect to the daemon socket (${accepted} of ${n} connections) within ${timeoutMs} ms`));
      }, timeoutMs);
      wakers.add(check);
      check();
    });
  return {
    socketPath,
    server,
    accepted: () => accepted,
    waitAccepted,
    lines,
    open: () => new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n)))),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const sock of sockets) sock.destroy();
      }),
  };
}
