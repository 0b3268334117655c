// Both guest clients inside a real guest (the tiny QEMU/TCG test guest with node, see
// testbed/guest-vm.ts), talking through a real virtio-serial port to the fake host:
// `virt-offload submit` (bundled here with esbuild) and examples/busybox-submit.sh, each
// finding the port through /sys/class/virtio-ports (the guest has no udev), one after the
// other on the same host connection (each client's marker and HELLO start a new session), and
// a client started while the host end is disconnected (the port's writes wait, its reads see
// end-of-file) that completes once QEMU reconnects.
// Needs what test/e2e/guest-boot.test.ts needs (qemu-system-x86, apt + dpkg, tar, xz-utils,
// util-linux) and busybox-static; the first run downloads the guest's .debs into .cache/guest/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureGuestImage } from '../../testbed/guest-image.js';
import { type Guest, startGuest } from '../../testbed/guest-vm.js';
import { repoRoot, scratchDir } from '../../testbed/tools.js';
import { type FakeHost, startFakeHost } from './fake-host.js';

const M1 = `sha256:${'12'.repeat(32)}`;

test('submit and the busybox client in a real guest, through the port found by its sysfs name', async () => {
  const { dir, cleanup } = scratchDir('vo-real-guest-');
  let guest: Guest | undefined;
  let host: FakeHost | undefined;
  try {
    const cli = join(dir, 'virt-offload.cjs');
    await build({ entryPoints: [join(repoRoot, 'dist/bin/virt-offload.js')], outfile: cli, bundle: true, platform: 'node', format: 'cjs', target: 'node20', external: ['hash-wasm', '@ably/vcdiff-decoder', 'dbus-next'], logLevel: 'warning' });
    const tool = new Uint8Array(150_000).map((_, i) => (i * 131 + (i >> 9)) & 0xff);
    const runs: { argv: readonly string[]; upload: number; same: boolean }[] = [];
    let dropNext = false;
    host = await startFakeHost({
      onRun: (ctx) => {
        runs.push({ argv: ctx.request.argv, upload: ctx.upload.length, same: ctx.upload.length === 0 || Buffer.from(tool).equals(ctx.upload) });
        if (ctx.request.measurement !== undefined) {
          ctx.deny('unknown-measurement', 'not in the policy');
          return;
        }
        ctx.stdout(`ran with ${ctx.request.argv.join(',')}\n`);
        ctx.stderr('to stderr\n');
        ctx.exit(7);
        // Not sooner: QEMU reads the socket only as fast as the (TCG) guest takes the data, and
        // a hang-up it sees first discards what it has not read yet, EXIT included (seen with
        // 10 ms). The next client's node takes seconds to start in the guest, so it still starts
        // while QEMU is reconnecting.
        if (dropNext) setTimeout(() => ctx.disconnect(), 300);
      },
    });
    const image = await ensureGuestImage({ withNode: true });
    guest = await startGuest({
      image,
      virtioPorts: [{ name: 'virt-offload.0', socketPath: host.path, reconnectSeconds: 1 }],
      extraFiles: [
        { path: '/opt/vo/virt-offload.cjs', hostPath: cli },
        { path: '/opt/vo/vo-run', content: readFileSync(join(repoRoot, 'examples/busybox-submit.sh')), mode: 0o755 },
        { path: '/opt/vo/tool', content: tool },
      ],
    });
    await guest.exec('vo-port virt-offload.0 >/dev/null; [ ! -e /dev/virtio-ports ]', 10_000).then((r) => assert.is(r.code, 0, `the port appears, without udev names: ${r.output}`));

    const node = await guest.exec('node /opt/vo/virt-offload.cjs submit /opt/vo/tool -- a b; echo "rc=$?"', 60_000);
    assert.match(node.output, /^ran with a,b$/m, node.output);
    assert.match(node.output, /^to stderr$/m);
    assert.match(node.output, /^rc=7$/m);

    const shell = await guest.exec(`sh /opt/vo/vo-run --measurement ${M1} x; echo "rc=$?"`, 60_000);
    assert.match(shell.output, /^rc=77$/m, shell.output);
    assert.ok(shell.output.includes(M1));

    const denied = await guest.exec(`node /opt/vo/virt-offload.cjs submit --measurement ${M1}; echo "rc=$?"`, 60_000);
    assert.match(denied.output, /denied \(unknown-measurement\): not in the policy/, denied.output);
    assert.match(denied.output, /^rc=77$/m);

    // The host drops the connection after this run; the next client starts while QEMU has not
    // reconnected yet (it retries every second).
    dropNext = true;
    const first = await guest.exec('node /opt/vo/virt-offload.cjs submit /opt/vo/tool -- one; echo "rc=$?"', 60_000);
    assert.match(first.output, /^rc=7$/m, first.output);
    dropNext = false;
    const late = await guest.exec('node /opt/vo/virt-offload.cjs submit --wait 20 /opt/vo/tool -- late; echo "rc=$?"', 60_000);
    assert.match(late.output, /^ran with late$/m, late.output);
    assert.match(late.output, /^rc=7$/m);
    assert.is(host.connections, 2, 'QEMU reconnected once, after the host dropped it');

    assert.equal(runs.map((r) => [r.argv.join(','), r.upload, r.same]), [
      ['a,b', tool.length, true],
      ['x', 0, true],
      ['', 0, true],
      ['one', tool.length, true],
      ['late', tool.length, true],
    ]);
  } finally {
    await guest?.stop();
    await host?.close();
    cleanup();
  }
});

test.run();
