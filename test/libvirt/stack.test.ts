// The libvirt test harness itself (test/helpers/libvirt.ts): the real stack comes up (or is
// reused), libvirt-dbus answers on the bus, a tiny domain with our metadata boots and its
// console command loop works, a cold-plugged channel shows up in the guest by name, and stop()
// leaves no test domain behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type LibvirtStack, offloadMetadata, startLibvirt, OFFLOAD_METADATA_NS } from '../helpers/libvirt.js';

let stack: LibvirtStack;

test.before(async () => {
  stack = await startLibvirt();
});

test.after(async () => {
  await stack?.stop();
});

test('a tiny domain with our metadata boots under libvirt and runs commands on its console', async () => {
  const name = `vo-stack-${process.pid}`;
  const domain = await stack.defineTinyDomain(name, {
    metadata: offloadMetadata({ required: true }),
    extraDevices: `<channel type='pty'><target type='virtio' name='vo-cold.0'/></channel>`,
  });
  assert.ok(stack.virsh(['list', '--all', '--name']).split('\n').includes(name));
  assert.match(stack.virsh(['metadata', name, OFFLOAD_METADATA_NS]), /required="yes"/);
  await domain.start();
  assert.is(domain.state(), 'running');
  const r = await domain.exec('cat /sys/class/virtio-ports/*/name');
  assert.is(r.code, 0);
  assert.match(r.output, /vo-cold\.0/);
  await domain.undefine();
  assert.not.ok(stack.virsh(['list', '--all', '--name']).split('\n').includes(name));
});

test.run();
