// findPort on fake /dev and /sys trees: the udev name first, else the sysfs scan a guest
// without udev needs (research/platform.md, pitfall 8), else an error listing what exists.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { findPort, PortNotFoundError } from '../../lib/guest/index.js';
import { scratchDir } from '../../testbed/tools.js';

function tree(ports: Record<string, string>, devices: readonly string[]): { devRoot: string; sysRoot: string; cleanup: () => void } {
  const { dir, cleanup } = scratchDir('vo-port-');
  const devRoot = join(dir, 'dev');
  const sysRoot = join(dir, 'sys');
  mkdirSync(devRoot);
  mkdirSync(join(sysRoot, 'class', 'virtio-ports'), { recursive: true });
  for (const [entry, name] of Object.entries(ports)) {
    mkdirSync(join(sysRoot, 'class', 'virtio-ports', entry));
    writeFileSync(join(sysRoot, 'class', 'virtio-ports', entry, 'name'), name);
  }
  for (const d of devices) {
    mkdirSync(join(devRoot, d, '..'), { recursive: true });
    writeFileSync(join(devRoot, d), '');
  }
  return { devRoot, sysRoot, cleanup };
}

function thrown(f: () => unknown): PortNotFoundError {
  try {
    f();
  } catch (err) {
    assert.instance(err, PortNotFoundError);
    return err as PortNotFoundError;
  }
  throw new Error('expected PortNotFoundError');
}

test('without udev: the /dev/vportNpM whose sysfs name matches (the trailing newline ignored)', () => {
  const t = tree({ vport0p1: 'org.qemu.guest_agent.0\n', vport0p2: '\n', vport1p1: 'virt-offload.0\n' }, ['vport0p1', 'vport0p2', 'vport1p1']);
  try {
    assert.is(findPort('virt-offload.0', t), join(t.devRoot, 'vport1p1'));
    assert.is(findPort(undefined, t), join(t.devRoot, 'vport1p1'), 'the default name is virt-offload.0');
    assert.is(findPort('org.qemu.guest_agent.0', t), join(t.devRoot, 'vport0p1'));
  } finally {
    t.cleanup();
  }
});

test('udev name first, even when sysfs lists another device for it', () => {
  const t = tree({ vport1p1: 'virt-offload.0\n' }, ['virtio-ports/virt-offload.0', 'vport1p1']);
  try {
    assert.is(findPort('virt-offload.0', t), join(t.devRoot, 'virtio-ports', 'virt-offload.0'));
  } finally {
    t.cleanup();
  }
});

test('no such port: the error lists the ports found; a listed port without its device node is named', () => {
  const t = tree({ vport0p1: 'org.qemu.guest_agent.0\n', vport0p2: '', 'not-a-port': 'virt-offload.1\n' }, ['vport0p1']);
  try {
    const e = thrown(() => findPort('virt-offload.1', t));
    assert.match(e.message, /no virtio-serial port named virt-offload\.1 \(ports found: org\.qemu\.guest_agent\.0 \(vport0p1\), vport0p2 \(unnamed\)\)/);
    assert.is(e.portName, 'virt-offload.1');
    const missing = tree({ vport2p1: 'virt-offload.0\n' }, []);
    try {
      assert.match(thrown(() => findPort('virt-offload.0', missing)).message, /vport2p1 .* does not exist/);
    } finally {
      missing.cleanup();
    }
  } finally {
    t.cleanup();
  }
});

test('no virtio-ports class at all, and names that could escape /dev, are refused', () => {
  const { dir, cleanup } = scratchDir('vo-port-');
  try {
    const e = thrown(() => findPort('virt-offload.0', { devRoot: join(dir, 'dev'), sysRoot: join(dir, 'sys') }));
    assert.match(e.message, /is virtio_console loaded/);
    assert.match(thrown(() => findPort('../sda', { devRoot: dir, sysRoot: dir })).message, /does not match/);
  } finally {
    cleanup();
  }
});

test.run();
