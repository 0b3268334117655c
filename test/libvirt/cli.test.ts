// `virt-offload enable` and `attach|detach --libvirt` as shipped (dist/virt-offload.cjs)
// against the real libvirt stack (test/helpers/libvirt.ts): enable on a running domain without
// a controller says it takes effect at the next boot, and a second run changes nothing; attach
// then names the remedy (exit 1); after a restart attach/detach --libvirt work (text and --json);
// usage errors exit 2; an unknown domain exits 1 naming it.
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { OFFLOAD_NAMESPACE, channels, parseXml, virtioSerialControllers } from '../../lib/libvirt/index.js';
import { type LibvirtStack, startLibvirt } from '../helpers/libvirt.js';
import { voAsync } from '../../testbed/offload-host.js';

const run = (args: string[], env?: NodeJS.ProcessEnv) => voAsync(args, env === undefined ? {} : { env });

let stack: LibvirtStack;
test.before(async () => {
  stack = await startLibvirt();
});
test.after(async () => {
  await stack?.stop();
});

test('usage: --qmp and --libvirt together, neither, a bad port name → exit 2', async () => {
  const both = await run(['attach', '--qmp', '/tmp/q.sock', '--libvirt', 'x', '--socket', '/tmp/d.sock']);
  assert.is(both.status, 2, both.stderr);
  assert.match(both.stderr, /either --qmp SOCKET or --libvirt DOMAIN/);
  const neither = await run(['detach']);
  assert.is(neither.status, 2, neither.stderr);
  const badPort = await run(['enable', 'x', '--port', 'bad name']);
  assert.is(badPort.status, 2, badPort.stderr);
});

test('an unknown domain: exit 1 naming the domain and libvirt’s message', async () => {
  const missing = `vo-nodomain-${process.pid}`;
  const r = await run(['enable', missing], { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: stack.busAddress });
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, `domain ${missing}: DomainLookupByName failed`);
  const a = await run(['attach', '--libvirt', missing, '--socket', '/tmp/vo-x.sock']);
  assert.is(a.status, 1, a.stderr);
  assert.match(a.stderr, missing);
});

test('enable on a running domain → next boot; attach names the remedy; after a restart attach/detach --libvirt work', async () => {
  const domain = await stack.defineTinyDomain(`vo-cli-${process.pid}`, { withSerialController: false });
  await domain.start();
  const socket = join(domain.dir, 'daemon.sock');

  const refused = await run(['attach', '--libvirt', domain.name, '--socket', socket]);
  assert.is(refused.status, 1, refused.stderr);
  assert.match(refused.stderr, `virt-offload enable ${domain.name}`);

  const enabled = await run(['enable', domain.name, '--required']);
  assert.is(enabled.status, 0, enabled.stderr);
  assert.match(enabled.stdout, /added a virtio-serial controller/);
  assert.match(enabled.stdout, /next boot/);
  assert.match(stack.virsh(['metadata', domain.name, OFFLOAD_NAMESPACE, '--config']), /required="yes"/);
  const json = await run(['enable', domain.name, '--required', '--json']);
  assert.is(json.status, 0, json.stderr);
  const result = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.is(result['unchanged'], true);
  assert.is(result['running'], true);
  assert.is(result['liveController'], false);

  // Opt out again before the restart (with the command hooks/README.md gives): another test may
  // have the libvirt hook installed on this machine right now, and its daemon would attach to an
  // opted-in domain (or, with required="yes", refuse its start when that daemon is down).
  stack.virsh(['metadata', domain.name, OFFLOAD_NAMESPACE, '--key', 'vo', '--config', '--set', '<offload enabled="no" required="no" port="virt-offload.0"/>']);
  assert.match(stack.virsh(['dumpxml', '--inactive', domain.name]), /<vo:offload [^>]*enabled="no"/);
  await domain.destroy();
  await domain.start();
  assert.is(virtioSerialControllers(parseXml(stack.virsh(['dumpxml', domain.name]), 'live')).length, 1);
  // libvirt needs the daemon's socket to exist (it chowns it for QEMU): attach refuses before.
  const early = await run(['attach', '--libvirt', domain.name, '--socket', socket]);
  assert.is(early.status, 1, early.stderr);
  assert.match(early.stderr, /is not a listening unix socket yet/, early.stderr);
  const daemon = createServer((c) => c.on('error', () => {}));
  await new Promise<void>((resolve) => daemon.listen(socket, resolve));
  const attached = await run(['attach', '--libvirt', domain.name, '--socket', socket, '--json']);
  assert.is(attached.status, 0, attached.stderr);
  const a = JSON.parse(attached.stdout) as { alreadyAttached: boolean; portId: string };
  assert.is(a.alreadyAttached, false);
  assert.is(a.portId, 'ua-vo-port0');
  const ch = channels(parseXml(stack.virsh(['dumpxml', domain.name]), 'live'));
  assert.equal(ch.map((c) => [c.sourcePath, c.targetName]), [[socket, 'virt-offload.0']]);
  const again = await run(['attach', '--libvirt', domain.name, '--socket', socket]);
  assert.is(again.status, 0, again.stderr);
  assert.match(again.stdout, /^already attached/);

  const detached = await run(['detach', '--libvirt', domain.name]);
  assert.is(detached.status, 0, detached.stderr);
  assert.match(detached.stdout, /detached port virt-offload\.0/);
  assert.equal(channels(parseXml(stack.virsh(['dumpxml', domain.name]), 'live')), []);
  await new Promise<void>((resolve) => daemon.close(() => resolve()));
  await domain.undefine();
});

test.run();
