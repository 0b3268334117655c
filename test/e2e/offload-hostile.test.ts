// A hostile guest through a real port: two tiny busybox guests under QEMU/TCG, each wired to
// its own VM socket of one real `virt-offload serve`. guest-a misbehaves from inside the VM —
// garbage bytes, an oversized frame, a frame with a bad payload CRC, an upload over the
// announced limit, a slow sender that trickles its upload, a client killed mid-upload, a
// garbage flood past the daemon's bound (it is disconnected, QEMU reconnects) — while guest-b
// keeps submitting. Checked: the daemon stays up, guest-a's next good request succeeds each
// time, guest-b is never disconnected and every one of its requests succeeds, every accepted
// request got exactly one final reply and one audit record, and the daemon's RSS stays bounded.
// The hostile byte sequences are built on the host with lib/protocol's encoders and written to
// the port from inside the guest (cat/dd), so every byte crosses the real virtio-serial port.
// Needs what test/e2e/offload.test.ts needs (busybox client only: no node in these guests).
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeChunks, encodeDataEnd, encodeFrame, encodeHello, encodeRequest, FrameDecoder, FrameType, type Message, resyncMarker } from '../../lib/protocol/index.js';
import { ensureGuestImage, type GuestFile } from '../../testbed/guest-image.js';
import { type Guest, startGuest } from '../../testbed/guest-vm.js';
import { buildC, commitAll, initPolicyRepo, measureOnHost, readAudit, rssKiB, type ServeProcess, startServe, vo, waitUntil } from '../../testbed/offload-host.js';
import { repoRoot, scratchDir } from '../../testbed/tools.js';

const HELLO_C = `#include <stdio.h>
int main(int argc, char **argv) {
  printf("hello from the host:");
  for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
  printf("\\n");
  return 3;
}
`;
const VMS = { a: { name: 'guest-a', uuid: '11111111-2222-4333-8444-555555555555' }, b: { name: 'guest-b', uuid: '66666666-7777-4888-9999-aaaaaaaaaaaa' } };
const scratch = scratchDir('vo-hostile-');
const dir = scratch.dir;
const auditLog = join(dir, 'audit.jsonl');
let daemon: ServeProcess | undefined;
let a: Guest | undefined;
let b: Guest | undefined;
let hello = new Uint8Array();
let mHello = '';
const mStranger = `sha256:${'5a'.repeat(32)}`;
let rssBaseline = 0;
let rssMax = 0;
let sampler: NodeJS.Timeout | undefined;
/** Requests made through the clients, per VM (each must have exactly one audit record). */
const made: Record<string, Array<{ decision: string; code?: string }>> = { 'guest-a': [], 'guest-b': [] };

async function inGuest(g: Guest, script: string): Promise<{ output: string; rc: number }> {
  const r = await g.exec(`${script}; echo "rc=$?"`, 90_000);
  const rc = /^rc=(\d+)$/m.exec(r.output);
  if (!rc) throw new Error(`no rc= in the guest's output:\n${r.output}`);
  return { output: r.output, rc: Number(rc[1]) };
}

/** A good request through the busybox client; asserts it ran and records it. */
async function goodRequest(g: Guest, vm: string, tag: string): Promise<void> {
  const r = await inGuest(g, `VO_WAIT=20 sh /opt/vo/vo-run /opt/vo/hello ${tag}`);
  assert.match(r.output, new RegExp(`^hello from the host: ${tag}$`, 'm'), `${vm} ${tag}: ${r.output}`);
  assert.is(r.rc, 3, `${vm} ${tag}: ${r.output}`);
  made[vm]!.push({ decision: 'allow' });
}

/** Frames of one guest session: the resync marker, a HELLO, then `more`. */
function session(nonce: string, ...more: Uint8Array[]): Buffer {
  return Buffer.concat([resyncMarker(), encodeHello({ role: 'guest', versions: [1], nonce }, 4096), ...more]);
}

function upload(id: number, bytes: Uint8Array, argv: string[]): Uint8Array[] {
  return [encodeRequest(id, { argv, env: {}, upload: bytes.length }, 4096), ...encodeChunks('DATA', id, bytes, 4096), encodeDataEnd(id)];
}

/** Garbage without a 'V', so it never starts a magic by accident. */
function garbage(n: number): Buffer {
  const g = randomBytes(n);
  for (let i = 0; i < n; i++) if (g[i] === 0x56) g[i] = 0x57;
  return g;
}

function errorCode(m: Message): string | undefined {
  return m.type === 'ERROR' ? m.body.code : undefined;
}

/** The frames the host sent, decoded from what the guest's reader captured (base64 on the console). */
function hostFrames(output: string): Message[] {
  const m = /B64-BEGIN\n([\s\S]*?)B64-END/.exec(output);
  if (!m) throw new Error(`no captured replies in:\n${output}`);
  const bytes = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  return new FrameDecoder({ from: 'host' }).feed(bytes).flatMap((e) => (e.kind === 'message' ? [e.message] : []));
}

const READER_START = 'port=$(vo-port virt-offload.0) && exec 3<>"$port" && { cat <&3 > /tmp/replies & echo $! > /tmp/reader.pid; }';
// The replies follow their audit records through QEMU into the guest: the reader is stopped once
// its file has not grown for 500 ms (up to 20 s), not after a fixed delay a busy host outlasts.
const READER_DUMP =
  's=-1; n=0; while [ $n -lt 40 ]; do c=$(wc -c < /tmp/replies); [ "$c" = "$s" ] && break; s=$c; usleep 500000; n=$((n + 1)); done; ' +
  'kill $(cat /tmp/reader.pid); echo B64-BEGIN; base64 /tmp/replies; echo B64-END';

test.before(async () => {
  const tools = join(dir, 'tools');
  mkdirSync(tools);
  const helloPath = buildC(join(tools, 'hello'), HELLO_C);
  mHello = measureOnHost(helloPath);
  const repo = join(dir, 'policy');
  initPolicyRepo(repo);
  vo(['policy', 'add', helloPath, '--name', 'hello', '--version', '1', '--vm', 'all', '--repo', repo]);
  commitAll(repo, 'approve hello 1');
  daemon = await startServe({ repo, store: join(dir, 'store'), auditLog, runDir: join(dir, 'run') });
  const sockA = await daemon.addVm(VMS.a.name, VMS.a.uuid);
  const sockB = await daemon.addVm(VMS.b.name, VMS.b.uuid);

  hello = readFileSync(helloPath);
  const hostile = session(
    'hostileSession1',
    garbage(100_000),
    // A real header (its CRC holds) announcing 200000 bytes, more than any frame may carry.
    encodeFrame(FrameType.REQUEST, 9, new Uint8Array(200_000)),
    encodeRequest(1, { argv: ['one'], env: {}, measurement: mHello }, 4096),
    encodeRequest(2, { argv: [], env: {}, upload: 1e12 }, 4096),
    // A REQUEST whose payload CRC does not hold.
    (() => {
      const f = encodeRequest(5, { argv: [], env: {}, measurement: mHello }, 4096);
      f[f.length - 3] = f[f.length - 3]! ^ 0x01;
      return f;
    })(),
    encodeRequest(3, { argv: [], env: {}, measurement: mStranger }, 4096),
    ...upload(4, hello, ['four']),
  );
  const slowHead = session('slowSender001', encodeRequest(1, { argv: ['slow'], env: {}, upload: hello.length }, 4096));
  const slowData = Buffer.concat([...encodeChunks('DATA', 1, hello, 4096), encodeDataEnd(1)]);
  const common: GuestFile[] = [
    { path: '/opt/vo/vo-run', hostPath: join(repoRoot, 'examples', 'busybox-submit.sh'), mode: 0o755 },
    { path: '/opt/vo/hello', content: hello, mode: 0o755 },
  ];
  const image = await ensureGuestImage();
  [a, b] = await Promise.all([
    startGuest({
      image,
      virtioPorts: [{ name: 'virt-offload.0', socketPath: sockA, reconnectSeconds: 1 }],
      extraFiles: [
        ...common,
        { path: '/opt/vo/hostile.bin', content: hostile },
        { path: '/opt/vo/slow-head.bin', content: slowHead },
        { path: '/opt/vo/slow-data.bin', content: slowData },
        // 4 MiB: the busybox client needs seconds to upload it, time to kill it mid-upload.
        { path: '/opt/vo/big', content: randomBytes(4 << 20) },
      ],
    }),
    startGuest({ image, virtioPorts: [{ name: 'virt-offload.0', socketPath: sockB, reconnectSeconds: 1 }], extraFiles: common }),
  ]);
  // The first request installs hello; the baseline RSS is taken once the daemon has served one.
  await goodRequest(a, VMS.a.name, 'setup');
  rssBaseline = rssKiB(daemon.pid);
  rssMax = rssBaseline;
  sampler = setInterval(() => {
    if (daemon?.running()) rssMax = Math.max(rssMax, rssKiB(daemon.pid));
  }, 100);
});

test.after(async () => {
  clearInterval(sampler);
  await Promise.all([a?.stop(), b?.stop()]);
  await daemon?.stop();
  scratch.cleanup();
});

test('garbage, an oversized frame, a bad CRC and an over-limit upload: one final reply per request, the session goes on', async () => {
  await inGuest(a!, `${READER_START}; cat /opt/vo/hostile.bin >&3`);
  // Requests 1, 3, 4 began (audited); 2 was refused at once (too-large: an ERROR, no record).
  await waitUntil('the audit records of the hostile session', () => readAudit(auditLog).filter((r) => r.event === 'request' && r.vm === VMS.a.name).length >= 4, 30_000);
  const replies = hostFrames((await inGuest(a!, READER_DUMP)).output);
  const greeting = replies.find((r) => r.type === 'HELLO');
  assert.ok(greeting !== undefined && 'nonce' in greeting.body && greeting.body.nonce === 'hostileSession1', 'the host answered the HELLO');
  const finals = (id: number) => replies.filter((r) => r.requestId === id && (r.type === 'EXIT' || r.type === 'DENIED' || r.type === 'ERROR'));
  assert.equal(finals(1).map((r) => r.type), ['EXIT']);
  assert.equal(finals(2).map((r) => [r.type, errorCode(r)]), [['ERROR', 'too-large']]);
  assert.equal(finals(3).map((r) => r.type), ['DENIED']);
  assert.equal(finals(4).map((r) => r.type), ['EXIT']);
  const out = (id: number) => Buffer.concat(replies.flatMap((r) => (r.requestId === id && r.type === 'STDOUT' ? [r.data] : []))).toString();
  assert.is(out(1), 'hello from the host: one\n');
  assert.is(out(4), 'hello from the host: four\n');
  // The oversized frame (refused at its header, before any payload is held) and the bad CRC.
  assert.equal(finals(9).map(errorCode), ['malformed']);
  assert.equal(finals(5).map(errorCode), ['malformed']);
  made[VMS.a.name]!.push({ decision: 'allow' }, { decision: 'deny', code: 'unknown-measurement' }, { decision: 'allow' });
  await goodRequest(a!, VMS.a.name, 'after-garbage');
  await goodRequest(b!, VMS.b.name, 'neighbour-1');
});

test('a slow sender: its upload trickles in while the other VM is served; then it completes', async () => {
  const slow = inGuest(
    a!,
    `${READER_START}; cat /opt/vo/slow-head.bin >&3; n=$(($(wc -c < /opt/vo/slow-data.bin) / 512 + 1)); i=0; ` +
      `while [ $i -lt $n ]; do dd if=/opt/vo/slow-data.bin bs=512 skip=$i count=1 2>/dev/null >&3; usleep 250000; i=$((i + 1)); done; echo SLOW-DONE`,
  );
  let slowDone = false;
  void slow.then(() => (slowDone = true));
  // guest-b is served while guest-a is still trickling (its exec returns after the last byte).
  await goodRequest(b!, VMS.b.name, 'during-slow');
  assert.not.ok(slowDone, 'guest-b was served before the slow sender finished');
  assert.match((await slow).output, /SLOW-DONE/);
  await waitUntil('the slow request to be audited', () => readAudit(auditLog).filter((r) => r.event === 'request' && r.vm === VMS.a.name).length >= 6, 30_000);
  const replies = hostFrames((await inGuest(a!, READER_DUMP)).output);
  assert.equal(replies.filter((r) => r.requestId === 1 && r.type === 'EXIT').length, 1, JSON.stringify(replies.map((r) => r.type)));
  assert.is(Buffer.concat(replies.flatMap((r) => (r.requestId === 1 && r.type === 'STDOUT' ? [r.data] : []))).toString(), 'hello from the host: slow\n');
  made[VMS.a.name]!.push({ decision: 'allow' });
});

test('a client killed mid-upload: its request is aborted (one audit record, no reply), the next client succeeds', async () => {
  await inGuest(a!, 'setsid sh /opt/vo/vo-run /opt/vo/big killed > /tmp/big.out 2>&1 & echo $! > /tmp/big.pid');
  // The upload is under way: the daemon holds one request in flight for guest-a.
  await waitUntil('guest-a to have an upload in flight', async () => {
    const s = await daemon!.control({ cmd: 'status' });
    const vm = (s.vms as Array<{ name: string; connection?: { inFlight: number } }>).find((v) => v.name === VMS.a.name);
    return vm?.connection?.inFlight === 1;
  }, 30_000);
  await inGuest(a!, 'kill -9 -$(cat /tmp/big.pid); usleep 200000');
  made[VMS.a.name]!.push({ decision: 'error', code: 'aborted' });
  await goodRequest(a!, VMS.a.name, 'after-kill');
});

test('a garbage flood past the bound: guest-a is disconnected, QEMU reconnects, guest-b is unaffected', async () => {
  const flood = inGuest(a!, 'port=$(vo-port virt-offload.0) && head -c 1500000 /dev/urandom | tr V W > "$port"');
  await goodRequest(b!, VMS.b.name, 'during-flood');
  await flood;
  await waitUntil('the daemon to disconnect guest-a', () => daemon!.logs.some((l) => l.level === 'warn' && /disconnecting a guest that does not speak the protocol/.test(String(l.message)) && l.vm === VMS.a.name), 30_000);
  await goodRequest(a!, VMS.a.name, 'after-flood');
  await goodRequest(b!, VMS.b.name, 'neighbour-2');
});

test('the daemon stayed up, guest-b was never disconnected, one audit record per accepted request, RSS bounded', () => {
  assert.ok(daemon!.running(), 'the daemon is up');
  assert.not.ok(daemon!.logs.some((l) => l.vm === VMS.b.name && /connection ended|disconnecting/.test(String(l.message))), 'guest-b kept its connection');
  const records = readAudit(auditLog).filter((r) => r.event === 'request');
  for (const vm of [VMS.a.name, VMS.b.name]) {
    const mine = records.filter((r) => r.vm === vm);
    const got = mine.map((r) => `${String(r.decision)}${r.decision === 'allow' ? '' : `/${String(r.code)}`}`).sort();
    const want = made[vm]!.map((e) => `${e.decision}${e.decision === 'allow' ? '' : `/${e.code}`}`).sort();
    assert.equal(got, want, `${vm}: ${JSON.stringify(mine, null, 1)}`);
    for (const r of mine.filter((x) => x.decision === 'allow')) assert.is(r.measurement, mHello);
  }
  assert.equal(daemon!.logs.filter((l) => l.level === 'error'), [], 'no error in the daemon log');
  // 4 MiB were uploaded, ~2 MB of garbage and a 200 KB frame refused: the daemon holds none of it.
  const growthMiB = (rssMax - rssBaseline) / 1024;
  assert.ok(growthMiB < 64, `daemon RSS grew by ${growthMiB.toFixed(1)} MiB (baseline ${(rssBaseline / 1024).toFixed(1)} MiB, max ${(rssMax / 1024).toFixed(1)} MiB)`);
});

test.run();
