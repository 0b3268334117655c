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
import { ensureGuestImage, type GuestImage } from '../helpers/guest-image.js';
import { type Guest, GuestBootError, liveGuestPids, startGuest } from '../helpers/guest-vm.js';
import { scratchDir } from '../helpers/tools.js';

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

test('the guest boots, finds virt-offload.0 by name, and exchanges a line each way with the host socket', async () => {
  const image = await guestImage();
  const { dir, cleanup } = scratchDir('vo-guest-boot-');
  const socketPath = join(dir, 'port.sock');
  const nonce = `n${process.pid}x${Date.now()}`;
  let received = '';
  let connections = 0;
  let replied = false;
  let resolveLine: (line: string) => void = () => {};
  const gotGuestLine = new Promise<string>((resolve) => (resolveLine = resolve));
  // The test is the host side of the port: QEMU connects to this socket (server=off).
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
        sock.write(`reply-from-host ${nonce}\n`);
      }
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));

  let guest: Guest | undefined;
  try {
    guest = await startGuest({ image, virtioPorts: [{ name: PORT_NAME, socketPath }] });
    console.log(`guest boot (spawn → VO-GUEST-READY): ${guest.bootMs} ms`);
    assert.ok(isAlive(guest.pid), 'QEMU runs after boot');
    assert.is(connections, 1, 'QEMU connected to the port socket once');

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
    assert.is(await gotGuestLine, `hello-from-guest ${image.kernelRelease}`, 'the host received the guest’s line');
    assert.match(r.output, new RegExp(`^guest got: reply-from-host ${nonce}$`, 'm'), 'the guest read the host’s reply');

    // A port name that does not exist is reported as such (vo-port exits 1 after its wait).
    const missing = await guest.exec('vo-port no-such-port 2', 10_000);
    assert.is(missing.code, 1);
    assert.match(missing.output, /no virtio port named no-such-port/);
  } finally {
    await guest?.stop();
    server.close();
    cleanup();
  }
  assert.not.ok(isAlive(guest.pid), `QEMU pid ${guest.pid} is gone after stop()`);
  assert.equal(liveGuestPids(), []);
});

test('a `run` script executes once, reports its exit code, and the guest powers QEMU off', async () => {
  const guest = await startGuest({ image: await guestImage(), run: 'echo "one-shot $((6 * 7))"\nexit 7' });
  try {
    const m = await guest.waitForConsole(/VO-GUEST-EXIT (\d+)/, 20_000);
    assert.is(m[1], '7');
    assert.match(guest.console(), /^one-shot 42$/m);
    let timer: NodeJS.Timeout | undefined;
    const status = await Promise.race([guest.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
    clearTimeout(timer);
    assert.equal(status, { code: 0, signal: null }, 'QEMU exits by itself on the guest’s poweroff');
  } finally {
    await guest.stop();
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
