// examples/busybox-submit.sh, the client for guests without node, run for real under busybox
// (only busybox applets on PATH) in a live conversation with the fake host: the script's
// port is a pair of FIFOs bridged to the host's socket. A FIFO whose writer has gone reads
// end-of-file like a virtio port whose host end is not connected, so the late-host case is
// the port's real behaviour. Also keeps the script equal to the copy in docs/protocol.md.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { close, createReadStream, createWriteStream, mkdirSync, open, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot, requireTool, scratchDir } from '../../testbed/tools.js';
import { type FakeHost, type FakeHostOptions, startFakeHost } from './fake-host.js';

const SCRIPT = join(repoRoot, 'examples', 'busybox-submit.sh');
const APPLETS = ['sh', 'printf', 'dd', 'od', 'crc32', 'tr', 'head', 'sed', 'grep', 'wc', 'mktemp', 'cat', 'rm', 'date', 'echo', 'sleep'];
const M1 = `sha256:${'ef'.repeat(32)}`;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  host: FakeHost;
  /** Bytes the script wrote while the host end was "not connected". */
  lost: number;
}

function sandbox(): { dir: string; bin: string; busybox: string; cleanup: () => void } {
  const busybox = requireTool('busybox', 'busybox-static');
  const { dir, cleanup } = scratchDir('vo-bbsubmit-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const applet of [...APPLETS, 'mkfifo']) symlinkSync(busybox, join(bin, applet));
  return { dir, bin, busybox, cleanup };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve(status);
    });
  });
}

/**
 * Run the script with `args` against a fake host; with `late`, the host end connects only once
 * the script's first HELLO (marker and frame) went nowhere and the script waits to retry.
 */
async function runScript(args: readonly string[], hostOptions: FakeHostOptions, options: { late?: boolean; files?: Record<string, Uint8Array> } = {}): Promise<Run> {
  const { dir, bin, busybox, cleanup } = sandbox();
  const host = await startFakeHost(hostOptions);
  try {
    for (const [name, bytes] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), bytes);
    const inPath = join(dir, 'in');
    const outPath = join(dir, 'out');
    const mk = spawnSync(join(bin, 'mkfifo'), [inPath, outPath]);
    assert.is(mk.status, 0, String(mk.stderr));
    let socket: Socket | undefined;
    let lost = 0;
    const bridge = (): Promise<void> =>
      new Promise((resolve) => {
        const toScript = createWriteStream(inPath);
        toScript.on('error', () => undefined); // the script exited: nobody reads the FIFO any more
        const s = connect(host.path, () => {
          socket = s;
          resolve();
        });
        s.on('data', (d: Buffer) => toScript.write(d));
        s.on('close', () => toScript.end());
        s.on('error', () => undefined);
      });
    if (options.late !== true) await bridge();
    const child = spawn(busybox, ['sh', SCRIPT, ...args], { cwd: dir, env: { PATH: bin, VO_IN: inPath, VO_OUT: outPath }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const fromScript = createReadStream(outPath);
    fromScript.on('data', (d) => {
      if (socket !== undefined) socket.write(d);
      else lost += d.length;
    });
    fromScript.on('end', () => socket?.end());
    if (options.late === true) {
      // Let the script open its end, then leave it without a writer: it reads end-of-file.
      await new Promise<void>((resolve, reject) => open(inPath, 'w', (err, fd) => (err === null ? close(fd, () => resolve()) : reject(err))));
      // Not a fixed delay, which a slow host could outlast before the script even wrote: the
      // marker (65 560 bytes) and more lost, then no byte for 250 ms (the script sleeps 1 s
      // between tries), so the bridge never starts inside a frame.
      const deadline = Date.now() + 30_000;
      for (let seen = -1, still = 0; still < 5; ) {
        if (Date.now() > deadline) throw new Error(`the script's first HELLO did not come (${lost} bytes written)`);
        await new Promise((resolve) => setTimeout(resolve, 50));
        still = lost > 65_560 && lost === seen ? still + 1 : 0;
        seen = lost;
      }
      await bridge();
    }
    const status = await exited(child);
    socket?.destroy();
    return { status, stdout, stderr, host, lost };
  } finally {
    await host.close();
    cleanup();
  }
}

test('upload in the host maxFrame chunks, output, remote exit code; PING answered', async () => {
  const binary = new Uint8Array(10_000).map((_, i) => (i * 37 + (i >> 8)) & 0xff);
  binary.set([0x56, 0x4f, 0x46, 0x31], 5000);
  let upload: Uint8Array | undefined;
  // The -- before the program's arguments is not one of them (as with `virt-offload submit`).
  const run = await runScript(['tool.bin', '--', '-x', 'héllo wörld'], {
    onRun: (ctx) => {
      upload = ctx.upload;
      ctx.send({ type: 'PING', requestId: 4, data: Uint8Array.of(7) });
      ctx.stdout('hello\n');
      ctx.stderr('warn\n');
      ctx.exit(3);
    },
  }, { files: { 'tool.bin': binary } });
  assert.is(run.status, 3, run.stderr);
  assert.is(run.stdout, 'hello\n');
  assert.is(run.stderr, 'warn\n');
  assert.ok(upload !== undefined && Buffer.from(binary).equals(upload), 'the host received the file unchanged');
  const types = run.host.received.map((m) => m.type);
  assert.equal(types, ['HELLO', 'REQUEST', 'DATA', 'DATA', 'DATA', 'DATA_END', 'PONG'], types.join(' '));
  const request = run.host.received[1];
  assert.ok(request?.type === 'REQUEST');
  assert.equal([...request.body.argv], ['-x', 'héllo wörld']);
});

test('--measurement: denied → 77 with the measurement; ERROR → 70; host gone → 71', async () => {
  const denied = await runScript(['--measurement', M1, 'a'], { onRun: (ctx) => ctx.deny('not-approved-for-vm', 'not approved for this VM') });
  assert.is(denied.status, 77);
  assert.ok(denied.stderr.includes(M1), denied.stderr);
  assert.match(denied.stderr, /not approved for this VM/);
  const error = await runScript(['--measurement', M1], { onRun: (ctx) => ctx.error('store', 'disk full') });
  assert.is(error.status, 70);
  assert.match(error.stderr, /disk full/);
  const gone = await runScript(['--measurement', M1], { onRun: (ctx) => setTimeout(() => ctx.disconnect(), 20) });
  assert.is(gone.status, 71);
  assert.match(gone.stderr, /closed before the reply/);
});

test('an argument the script would have to escape into JSON is refused (2) before the port is opened; so are no arguments', () => {
  const { dir, bin, busybox, cleanup } = sandbox();
  try {
    for (const args of [[], ['--measurement']]) {
      const r = spawnSync(busybox, ['sh', SCRIPT, ...args], { cwd: dir, env: { PATH: bin, VO_IN: join(dir, 'none-in'), VO_OUT: join(dir, 'none-out') }, encoding: 'utf8' });
      assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^(usage: vo-run FILE|vo-run: --measurement needs a measurement)/);
    }
    for (const arg of ['say "hi"', 'back\\slash', 'line\nbreak']) {
      // VO_IN/VO_OUT name nothing: opening them would fail with another message.
      const r = spawnSync(busybox, ['sh', SCRIPT, '--measurement', M1, 'ok', arg], { cwd: dir, env: { PATH: bin, VO_IN: join(dir, 'none-in'), VO_OUT: join(dir, 'none-out') }, encoding: 'utf8' });
      assert.is(r.status, 2, `${JSON.stringify(arg)}: ${r.stderr}`);
      assert.match(r.stderr, /an argument has a quote, a backslash or a control character/);
    }
  } finally {
    cleanup();
  }
});

test('stale bytes that begin like a frame do not hide the host HELLO behind them', async () => {
  // An earlier client's leftovers end in a magic and a few header bytes; the host HELLO follows
  // within the 20 bytes the script reads as that header. They must be scanned again.
  const preamble = Uint8Array.of(0x56, 0x4f, 0x46, 0x31, 0x20, 0, 0, 0, 9);
  const run = await runScript(['--measurement', M1], { preamble, onRun: (ctx) => ctx.exit(5) });
  assert.is(run.status, 5, run.stderr);
});

test('a host that connects late: the script reads end-of-file, waits, and sends marker + a new HELLO', async () => {
  const run = await runScript(['--measurement', M1], { onRun: (ctx) => ctx.exit(0) }, { late: true });
  assert.is(run.status, 0, run.stderr);
  assert.ok(run.lost > 65_560, `the first HELLO was sent while nobody listened (${run.lost} bytes lost)`);
  assert.equal(run.host.received.map((m) => m.type), ['HELLO', 'REQUEST']);
  const hello = run.host.received[0];
  assert.ok(hello?.type === 'HELLO' && hello.body.role === 'guest');
  assert.match(hello.body.nonce, /r\d+$/, 'a retried HELLO carries a new nonce');
});

test('port lookup: the sysfs name when there is no /dev/virtio-ports; the ports found when none matches', () => {
  const { dir, bin, busybox, cleanup } = sandbox();
  try {
    for (const [entry, name] of [['vport0p1', 'org.qemu.guest_agent.0'], ['vport1p1', 'virt-offload.0']] as const) {
      mkdirSync(join(dir, 'sys/class/virtio-ports', entry), { recursive: true });
      writeFileSync(join(dir, 'sys/class/virtio-ports', entry, 'name'), `${name}\n`);
    }
    mkdirSync(join(dir, 'dev'));
    const env = { PATH: bin, VO_SYS: join(dir, 'sys'), VO_DEV: join(dir, 'dev') };
    const found = spawnSync(busybox, ['sh', SCRIPT, '--measurement', M1], { env, encoding: 'utf8' });
    assert.is(found.status, 71);
    assert.is(found.stderr, `vo-run: cannot open ${join(dir, 'dev', 'vport1p1')}\n`, 'the matching port, which has no device node here');
    const none = spawnSync(busybox, ['sh', SCRIPT, '--measurement', M1], { env: { ...env, VO_PORT_NAME: 'other.0' }, encoding: 'utf8' });
    assert.is(none.status, 71);
    assert.is(none.stderr, 'vo-run: no virtio-serial port named other.0 (ports found: org.qemu.guest_agent.0 virt-offload.0)\n');
    const missing = spawnSync(busybox, ['sh', SCRIPT, 'nope'], { env, encoding: 'utf8' });
    assert.is(missing.status, 66);
  } finally {
    cleanup();
  }
});

test('docs/protocol.md carries the same script', () => {
  const doc = readFileSync(join(repoRoot, 'docs', 'protocol.md'), 'utf8');
  const m = /<!-- vo-run:begin -->\n```sh\n([\s\S]*?)```\n<!-- vo-run:end -->/.exec(doc);
  assert.ok(m !== null, 'docs/protocol.md has a vo-run block');
  assert.is(m[1], readFileSync(SCRIPT, 'utf8'));
});

test.run();
