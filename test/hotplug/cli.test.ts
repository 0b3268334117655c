// `virt-offload attach|detach` against a real (paused) QEMU: ports plug and unplug without a
// guest OS when the VM already has a virtio-serial controller (libvirt-style id virtio-serial0).
// Runs the shipped bundle dist/virt-offload.cjs (npm run build makes it).
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { QmpClient } from '../../lib/qmp/index.js';
import { startQemu } from '../helpers/qemu.js';
import { voAsync } from '../../testbed/offload-host.js';

// Not spawnSync: a blocked event loop would keep our own QMP session from closing, and QEMU
// serves one QMP client at a time.
const run = (args: string[]) => voAsync(args);

async function labels(qmpSocket: string): Promise<string[]> {
  const qmp = new QmpClient();
  await qmp.connect(qmpSocket);
  try {
    return (await qmp.execute<{ label: string }[]>('query-chardev')).map((c) => c.label).sort();
  } finally {
    await qmp.disconnect();
  }
}

test('attach, attach again (no-op), detach, detach again; text and --json', async () => {
  const qemu = await startQemu({ machine: 'pc', extraArgs: ['-device', 'virtio-serial-pci,id=virtio-serial0'] });
  try {
    const socket = join(qemu.dir, 'daemon.sock');
    const before = await labels(qemu.qmpSocket);

    let r = await run(['attach', '--qmp', qemu.qmpSocket, '--socket', socket]);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, `attached port virt-offload.0 (vo-port0 on virtio-serial0.0, chardev vo-chr0 → ${socket})`);
    assert.match(r.stdout, /^ {2}chardev-add: add chardev vo-chr0: connect to .* \(retry every 1 s\)$/m);
    assert.match(r.stdout, /^ {2}device_add: add virtserialport vo-port0 named virt-offload\.0 on virtio-serial0\.0$/m);
    assert.ok((await labels(qemu.qmpSocket)).includes('vo-chr0'));

    r = await run(['attach', '--qmp', qemu.qmpSocket, '--socket', socket, '--json']);
    assert.is(r.status, 0, r.stderr);
    const again = JSON.parse(r.stdout) as { alreadyAttached: boolean; steps: unknown[]; portId: string };
    assert.is(again.alreadyAttached, true);
    assert.equal(again.steps, []);
    assert.is(again.portId, 'vo-port0');

    r = await run(['detach', '--qmp', qemu.qmpSocket, '--json']);
    assert.is(r.status, 0, r.stderr);
    const gone = JSON.parse(r.stdout) as { steps: { kind: string }[] };
    assert.equal(gone.steps.map((s) => s.kind), ['remove-port', 'remove-chardev'], 'the VM’s own controller stays');
    assert.equal(await labels(qemu.qmpSocket), before);

    r = await run(['detach', '--qmp', qemu.qmpSocket]);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /^not attached: no device or chardev of port virt-offload\.0; nothing to do$/m);

    // Another port name gets its own ids.
    r = await run(['attach', '--qmp', qemu.qmpSocket, '--socket', socket, '--name', 'vo-test']);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /vo-port-vo-test on virtio-serial0\.0, chardev vo-chr-vo-test/);
    r = await run(['detach', '--qmp', qemu.qmpSocket, '--name', 'vo-test']);
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ {2}chardev-remove: remove chardev vo-chr-vo-test$/m);
    assert.equal(await labels(qemu.qmpSocket), before);
  } finally {
    await qemu.stop();
  }
});

test('usage errors exit 2, naming the option; failures exit 1 with the reason', async () => {
  const qemu = await startQemu({ machine: 'q35' });
  try {
    const usage: [string[], RegExp][] = [
      [['attach', '--qmp', qemu.qmpSocket], /--socket is required/],
      [['attach', '--socket', '/tmp/x.sock'], /--qmp is required/],
      [['attach', '--qmp', qemu.qmpSocket, '--socket', 'relative.sock'], /must be absolute/],
      [['attach', '--qmp', qemu.qmpSocket, '--socket', '/tmp/x.sock', '--name', 'two words'], /port name "two words"/],
      [['detach', '--qmp', qemu.qmpSocket, '--timeout', '0'], /--timeout 0: expected seconds/],
    ];
    for (const [args, message] of usage) {
      const r = await run(args);
      assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const before = await labels(qemu.qmpSocket);
    let r = await run(['attach', '--qmp', qemu.qmpSocket, '--socket', join(qemu.dir, 'd.sock')]);
    assert.is(r.status, 1);
    assert.match(r.stderr, /no free pcie-root-port/);
    assert.equal(await labels(qemu.qmpSocket), before, 'nothing added');
    r = await run(['detach', '--qmp', join(qemu.dir, 'no-such.sock')]);
    assert.is(r.status, 1);
    assert.match(r.stderr, /cannot connect to QMP at .*no-such\.sock/);
  } finally {
    await qemu.stop();
  }
});

test.run();
