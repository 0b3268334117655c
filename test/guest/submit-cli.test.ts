// `virt-offload submit` as a user runs it (the built CLI in a child process) against the fake
// host, the port given as a unix socket path: arguments after --, output, exit statuses.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { voAsync } from '../../testbed/offload-host.js';
import { repoRoot, scratchDir } from '../../testbed/tools.js';
import { type FakeHost, startFakeHost } from './fake-host.js';

const cli = join(repoRoot, 'dist/bin/virt-offload.js');
const { dir, cleanup } = scratchDir('vo-submit-cli-');
const tool = join(dir, 'tool');
writeFileSync(tool, new Uint8Array(9000).map((_, i) => i & 0xff));
const M1 = `sha256:${'cd'.repeat(32)}`;

let hosts: FakeHost[] = [];
test.after.each(async () => {
  for (const h of hosts) await h.close();
  hosts = [];
});
test.after(cleanup);

async function host(options: Parameters<typeof startFakeHost>[0]): Promise<FakeHost> {
  const h = await startFakeHost(options);
  hosts.push(h);
  return h;
}

/** Run the CLI without blocking this process (the fake host lives in it); `during` gets the child. */
const vo = (args: string[], during?: (child: ChildProcess) => void) => voAsync(args, { cli, ...(during === undefined ? {} : { during }) });

test('submit FILE --port SOCKET -- ARGS: upload, output, remote exit code; the name defaults to the file name', async () => {
  let seen: { argv: readonly string[]; name: string | undefined; size: number } | undefined;
  const h = await host({
    onRun: (ctx) => {
      seen = { argv: ctx.request.argv, name: ctx.request.name, size: ctx.upload.length };
      ctx.stdout(`ran ${ctx.request.argv.join(' ')}\n`);
      ctx.stderr('note\n');
      ctx.exit(42);
    },
  });
  const r = await vo(['submit', tool, '--port', h.path, '--', '-x', '--long', 'two words']);
  assert.is(r.status, 42, r.stderr);
  assert.is(r.stdout, 'ran -x --long two words\n');
  assert.is(r.stderr, 'note\n');
  assert.equal(seen, { argv: ['-x', '--long', 'two words'], name: 'tool', size: 9000 });
});

test('submit --measurement: denied → 77 with the measurement; ERROR → 70; --name sent', async () => {
  const denied = await host({ onRun: (ctx) => ctx.deny('revoked', `revoked: ${ctx.request.name ?? '?'} 1.0 has a CVE`) });
  const r = await vo(['submit', '--measurement', M1, '--name', 'jq', '--port', denied.path, '--', '.a']);
  assert.is(r.status, 77);
  assert.match(r.stderr, /denied \(revoked\): revoked: jq 1\.0 has a CVE/);
  assert.ok(r.stderr.includes(`measurement: ${M1}`), r.stderr);
  const failing = await host({ onRun: (ctx) => ctx.error('store', 'install failed') });
  const e = await vo(['submit', '--measurement', M1, '--port', failing.path]);
  assert.is(e.status, 70);
  assert.match(e.stderr, /store: install failed/);
});

test('host gone mid-run → 71; no host answer within --wait → 71', async () => {
  const h = await host({ onRun: (ctx) => setTimeout(() => ctx.disconnect(), 30) });
  const r = await vo(['submit', '--measurement', M1, '--port', h.path]);
  assert.is(r.status, 71);
  assert.match(r.stderr, /closed the channel/);
  const deaf = await host({ deafMs: 60_000 });
  const started = Date.now();
  const w = await vo(['submit', '--measurement', M1, '--wait', '1.5', '--port', deaf.path]);
  assert.is(w.status, 71);
  assert.ok(Date.now() - started >= 1500);
  assert.match(w.stderr, /no answer from the host within 1500 ms/);
});

test('Ctrl-C during a run: CANCEL reaches the host, exit 130', async () => {
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const h = await host({
    onRun: (ctx) => {
      ctx.stdout('working\n');
      started();
    },
  });
  const r = await vo(['submit', '--measurement', M1, '--port', h.path], (child) => {
    void running.then(() => setTimeout(() => child.kill('SIGINT'), 50));
  });
  assert.is(r.status, 130, r.stderr);
  assert.is(r.stdout, 'working\n');
  assert.match(r.stderr, /interrupted/);
  assert.equal(h.received.map((m) => m.type), ['HELLO', 'REQUEST', 'CANCEL']);
  assert.ok(h.actions.some((a) => a.type === 'abort'), 'the host session ended the request');
});

test('usage errors → 2 before anything is contacted; a missing file → 66; an unknown port name → 71 listing ports', async () => {
  const h = await host({});
  for (const args of [['submit'], ['submit', '--measurement', 'md5:00'], ['submit', tool, '--name', '-bad'], ['submit', tool, '--wait', 'soon']]) {
    const r = await vo([...args, '--port', h.path]);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const missing = await vo(['submit', join(dir, 'nope'), '--port', h.path]);
  assert.is(missing.status, 66);
  assert.equal(h.received, []);
  const named = await vo(['submit', '--measurement', M1, '--port', 'no-such-port.7']);
  assert.is(named.status, 71);
  assert.match(named.stderr, /no virtio-serial port .*no-such-port\.7/);
  // What epoll cannot watch is refused with a message (libuv used to abort the process: 134).
  for (const [port, what] of [['/dev/null', 'a memory device'], [tool, 'a regular file']] as const) {
    const r = await vo(['submit', '--measurement', M1, '--wait', '1', '--port', port]);
    assert.is(r.status, 71, `${port}: ${r.status} ${r.stderr}`);
    assert.match(r.stderr, `cannot use ${port} as the port: it is ${what}`);
  }
});

test.run();
