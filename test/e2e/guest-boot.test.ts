// The tiny test guest boots under QEMU/TCG from Debian's kernel and busybox-static, its
// virtio_console driver binds the port named virt-offload.0, and bytes flow both ways between a
// unix socket the test listens on and /dev/vportNpM inside the guest. Also: the one-shot `run`
// mode powers the guest off by itself, and QEMU never outlives stop() or a failed boot.
// Needs qemu-system-x86, apt + dpkg (apt-get download, dpkg-deb), tar, xz-utils, util-linux
// (setpriv); the first run downloads ~72 MB of .debs into .cache/guest/ (later runs reuse them).
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureGuestImage, type GuestImage } from '../../testbed/guest-image.js';
import { type Guest, GuestBootError, liveGuestPids, startGuest } from '../../testbed/guest-vm.js';
import { scratchDir } from '../../testbed/tools.js';

const PORT_NAME = 'virt-offload.0';

// Built (or found in the cache) by the first test that needs it. Not in test.before: uvu
// reports a throwing hook without its message, and a missing tool must be named.
let imagePromise: Promise<GuestImage> | undefined;
function guestImage(): Promise<GuestImage> {
  imagePromise ??= (async () => {
    const t = Date.now();
    const image = await ensureGuestImage();
    const packages = Object.entries(image.packages).map(([p, v]) => `${p}=${v}`).join(', ');
    console.log(`guest image ready in ${Date.now() - t} ms: kernel ${image.kernelRelease} (${packages})`);
    return image;
  })();
  return imagePromise;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * The host side of a port: a unix socket QEMU connects to (chardev server=off). Replies
 * `reply` to the first line it receives, as a daemon would answer a hello.
 */
async function hostPort(dir: string, reply: string): Promise<{ socketPath: string; firstLine: Promise<string>; connections: () => number; close: () => void }> {
  const socketPath = join(dir, 'port.sock');
  let received = '';
  let connections = 0;
  let replied = false;
  let resolveLine: (line: string) => void = () => {};
  const firstLine = new Promise<string>((resolve) => (resolveLine = resolve));
  const server = createServer((sock: Socket) => {
    connections++;
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      received += d;
      const nl = received.indexOf('\n');
      if (nl >= 0 && !replied) {
        replied = true;
        resolveLine(received.slice(0, nl));
        sock.write(`${reply}\n`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  return { socketPath, firstLine, connections: () => connections, close: () => server.close() };
}

test('the guest boots, finds virt-offload.0 by name, and exchanges a line each way with the host socket', async () => {
  const image = await guestImage();
  const { dir, cleanup } = scratchDir('vo-guest-boot-');
  const nonce = `n${process.pid}x${Date.now()}`;
  const host = await hostPort(dir, `reply-from-host ${nonce}`);
  const socketPath = host.socketPath;

  let guest: Guest | undefined;
  try {
    guest = await startGuest({ image, virtioPorts: [{ name: PORT_NAME, socketPath }] });
    console.log(`guest boot (spawn → VO-GUEST-READY): ${guest.bootMs} ms`);
    assert.ok(isAlive(guest.pid), 'QEMU runs after boot');
    assert.is(host.connections(), 1, 'QEMU connected to the port socket once');

    const t = Date.now();
    const r = await guest.exec(
      [
        `p=$(vo-port ${PORT_NAME}) || exit 3`,
        'echo "port device: $p"',
        'exec 3<>"$p"',
        'echo "hello-from-guest $(uname -r)" >&3',
        'read -r reply <&3',
        'echo "guest got: $reply"',
      ].join('\n'),
      20_000,
    );
    console.log(`guest round trip through ${PORT_NAME} (command sent → result): ${Date.now() - t} ms`);
    assert.is(r.code, 0, `guest script failed:\n${r.output}`);
    assert.match(r.output, /^port device: \/dev\/vport\d+p\d+$/m);
    assert.is(await host.firstLine, `hello-from-guest ${image.kernelRelease}`, 'the host received the guest’s line');
    assert.match(r.output, new RegExp(`^guest got: reply-from-host ${nonce}$`, 'm'), 'the guest read the host’s reply');

    // A port name that does not exist is reported as such (vo-port exits 1 after its wait).
    const missing = await guest.exec('vo-port no-such-port 2', 10_000);
    assert.is(missing.code, 1);
    assert.match(missing.output, /no virtio port named no-such-port/);
  } finally {
    await guest?.stop();
    host.close();
    cleanup();
  }
  assert.not.ok(isAlive(guest.pid), `QEMU pid ${guest.pid} is gone after stop()`);
  assert.equal(liveGuestPids(), []);
});

test('a `run` script executes once on q35, reports its exit code, and the guest powers QEMU off', async () => {
  // q35 with two empty root ports (for hot-plug tests): the guest sees them as PCI bridges.
  const run = ['echo "one-shot $((6 * 7))"', 'echo "pci bridges: $(grep -l 0x060400 /sys/bus/pci/devices/*/class | wc -l)"', 'exit 7'].join('\n');
  const guest = await startGuest({ image: await guestImage(), machine: 'q35', pcieRootPorts: 2, run });
  try {
    const m = await guest.waitForConsole(/VO-GUEST-EXIT (\d+)/, 20_000);
    assert.is(m[1], '7');
    assert.match(guest.console(), /^one-shot 42$/m);
    assert.match(guest.console(), /^pci bridges: 2$/m);
    let timer: NodeJS.Timeout | undefined;
    const status = await Promise.race([guest.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
    clearTimeout(timer);
    assert.equal(status, { code: 0, signal: null }, 'QEMU exits by itself on the guest’s poweroff');
  } finally {
    await guest.stop();
  }
  assert.not.ok(isAlive(guest.pid));
});

test('the node variant runs a script given as an extra file, which talks to the host through the port', async () => {
  const t0 = Date.now();
  const image = await ensureGuestImage({ withNode: true });
  console.log(`guest image with node ready in ${Date.now() - t0} ms (${image.memoryMiB} MiB guest)`);
  const { dir, cleanup } = scratchDir('vo-guest-node-');
  const nonce = `m${process.pid}x${Date.now()}`;
  const host = await hostPort(dir, `node-reply ${nonce}`);
  // Blocking reads on the port device: the simplest client, enough to prove node can use it.
  const client = [
    "import { openSync, readSync, writeSync } from 'node:fs';",
    "const fd = openSync(process.argv[2], 'r+');",
    "writeSync(fd, `hello-from-node ${process.version}\\n`);",
    'const buf = Buffer.alloc(256);',
    "let got = '';",
    "while (!got.includes('\\n')) { const n = readSync(fd, buf); if (n === 0) break; got += buf.toString('utf8', 0, n); }",
    'console.log(`node got: ${got.trim()}`);',
  ].join('\n');
  let guest: Guest | undefined;
  try {
    guest = await startGuest({
      image,
      virtioPorts: [{ name: PORT_NAME, socketPath: host.socketPath }],
      extraFiles: [{ path: '/opt/vo/client.mjs', content: client }],
    });
    console.log(`guest boot with node: ${guest.bootMs} ms`);
    const t = Date.now();
    const r = await guest.exec(`node /opt/vo/client.mjs "$(vo-port ${PORT_NAME})"`, 30_000);
    console.log(`node start + round trip in the guest: ${Date.now() - t} ms`);
    assert.is(r.code, 0, `node client failed:\n${r.output}`);
    assert.is(await host.firstLine, `hello-from-node ${process.version}`, 'the guest runs the host’s node binary');
    assert.match(r.output, new RegExp(`^node got: node-reply ${nonce}$`, 'm'));
  } finally {
    await guest?.stop();
    host.close();
    cleanup();
  }
  assert.not.ok(isAlive(guest.pid));
});

test('a boot that misses its deadline kills QEMU and says so', async () => {
  const image = await guestImage();
  let caught: unknown;
  try {
    const guest = await startGuest({ image, bootTimeoutMs: 200 });
    await guest.stop();
  } catch (err) {
    caught = err;
  }
  assert.instance(caught, GuestBootError);
  const err = caught as GuestBootError;
  assert.match(err.message, /did not show .*VO-GUEST-READY.* within 200 ms/);
  assert.not.ok(isAlive(err.pid), `QEMU pid ${err.pid} was killed`);
  assert.equal(liveGuestPids(), []);
});

test.run();
