// The client loop of bench/offload that runs INSIDE the tiny guest (bundled into one CommonJS
// file by run.ts and put into the guest's initramfs). Node starts once per phase; every timing
// is taken in this process with performance.now() around one operation, so node's start-up is
// never counted. Prints one line `BENCH-RESULT <json>` with the samples (milliseconds).
//
//   rtt N          raw channel round trip: write 1 byte to the port, read the 1 byte the
//                  bench's own listener echoes (no daemon), N times after 3 warm-ups
//   copy N FILE    raw byte copy of FILE to the port, as cat does: read it in 1 MiB blocks (two
//                  buffers in turn, as the client), write each block to the port; read the
//                  listener's 1-byte acknowledgement sent once it has them all; N times after 1
//   writes N BYTES port writes alone: BYTES bytes from memory in 64 KiB writes (no file read),
//                  then the acknowledgement; N times after 1 (the port's own ceiling)
//   submit N M     `submit --measurement M` through lib/guest's client, N times after 10
//                  warm-ups (each a whole conversation: port open, HELLO, REQUEST,
//                  EXIT); the program must exit 0. Under TCG the guest's JIT needs those
//                  warm-ups: the first submits of a process take 2-5x longer (steady state is
//                  what is measured; a one-shot CLI pays the cold path)
//   upload N FILE  `submit FILE` (upload), N times after 1 warm-up; must exit 0
//   parts N M      the same conversation as `submit M`, driven step by step with lib/protocol
//                  over one open port, to time its parts: open, HELLO → host HELLO,
//                  REQUEST → EXIT, PING → PONG, close (samples are [find, open, hello, request,
//                  ping, close, find-sysfs] rows; find is findPort by the udev name, find-sysfs
//                  the search a guest without udev makes, open is openChannel)
//   codec N M      the protocol work of one submit, each part timed alone (as the samples of
//                  `submit`, after 10 warm-ups): encoding its HELLO and its REQUEST (each
//                  with the encoder's round-trip check), decoding the host's HELLO and an EXIT
//                  (samples are [hello, request, host-hello, exit] rows)
//   cost N FILE    the guest CPU an upload of FILE spends besides the port writes, N times after
//                  1 warm-up: reading it in ~1 MiB blocks (two buffers in turn, as the client), and
//                  the CRC-32 of its 64 KiB frames, which the client no longer computes (DATA
//                  frames go unchecked; samples are [read, crc] rows)
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type ByteChannel, findPort, openChannel, submit, useNativeCodecs } from '../../lib/guest/index.js';
import { crc32, encodeExit, encodeHello, encodePing, encodeRequest, FrameDecoder, MIN_FRAME, type Message } from '../../lib/protocol/index.js';

const PORT = 'virt-offload.0';
const CHUNK = 64 * 1024;
const WARM_UPS = 10;

const sink = (): Writable =>
  new Writable({
    write(_chunk, _enc, done) {
      done();
    },
  });

async function readExactly(channel: ByteChannel, n: number): Promise<void> {
  let got = 0;
  while (got < n) {
    const chunk = await channel.read();
    if (chunk === null) throw new Error('the host closed the port');
    got += chunk.length;
  }
}

async function rtt(n: number): Promise<number[]> {
  const channel = await openChannel(findPort(PORT));
  const one = new Uint8Array([0x2a]);
  const out: number[] = [];
  try {
    for (let i = 0; i < n + 3; i++) {
      const t = performance.now();
      await channel.write(one);
      await readExactly(channel, 1);
      if (i >= 3) out.push(performance.now() - t);
    }
  } finally {
    channel.close();
  }
  return out;
}

async function copyFile(n: number, file: string): Promise<number[]> {
  const channel = await openChannel(findPort(PORT));
  const handle = await open(file, 'r');
  const out: number[] = [];
  try {
    const { size } = await handle.stat();
    const buffers = [new Uint8Array(1 << 20), new Uint8Array(1 << 20)];
    for (let i = 0; i < n + 1; i++) {
      const t = performance.now();
      for (let at = 0, turn = 0; at < size; turn++) {
        const block = buffers[turn % 2]!.subarray(0, Math.min(1 << 20, size - at));
        const { bytesRead } = await handle.read(block, 0, block.length, at);
        if (bytesRead === 0) throw new Error(`${file} shrank while it was copied`);
        await channel.write(block.subarray(0, bytesRead));
        at += bytesRead;
      }
      await readExactly(channel, 1);
      if (i >= 1) out.push(performance.now() - t);
    }
  } finally {
    await handle.close();
    channel.close();
  }
  return out;
}

async function writes(n: number, bytes: number): Promise<number[]> {
  const channel = await openChannel(findPort(PORT));
  const block = new Uint8Array(CHUNK).map((_, i) => (i * 131) & 0xff);
  const out: number[] = [];
  try {
    for (let i = 0; i < n + 1; i++) {
      const t = performance.now();
      for (let at = 0; at < bytes; at += CHUNK) await channel.write(bytes - at >= CHUNK ? block : block.subarray(0, bytes - at));
      await readExactly(channel, 1);
      if (i >= 1) out.push(performance.now() - t);
    }
  } finally {
    channel.close();
  }
  return out;
}

async function submits(n: number, warm: number, what: { measurement: string } | { file: string }): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n + warm; i++) {
    const t = performance.now();
    const r = await submit({ port: { name: PORT }, ...what, argv: [], stdout: sink(), stderr: process.stderr, timeouts: { handshakeMs: 20_000 } });
    const ms = performance.now() - t;
    if (r.status !== 0) throw new Error(`submit ${JSON.stringify(what)} ended with status ${r.status} (${r.outcome}): ${r.message ?? ''}`);
    if (i >= warm) out.push(ms);
  }
  return out;
}

/** Reads messages from the host until `match` accepts one. */
async function until(channel: ByteChannel, decoder: FrameDecoder, match: (m: Message) => boolean): Promise<Message> {
  for (;;) {
    const chunk = await channel.read();
    if (chunk === null) throw new Error('the host closed the port');
    for (const e of decoder.feed(chunk)) if (e.kind === 'message' && match(e.message)) return e.message;
  }
}

/** A /dev without virtio-ports/ (as in a guest without udev) whose vportNpM lead to the real ones. */
function devWithoutUdev(): string {
  const dir = '/tmp/dev-without-udev';
  mkdirSync(dir, { recursive: true });
  for (const entry of readdirSync('/sys/class/virtio-ports')) {
    if (!existsSync(join(dir, entry))) symlinkSync(join('/dev', entry), join(dir, entry));
  }
  return dir;
}

async function parts(n: number, measurement: string): Promise<number[][]> {
  const rows: number[][] = [];
  const noUdev = devWithoutUdev();
  for (let i = 0; i < n + WARM_UPS; i++) {
    // The two lookups take turns going first: neither always finds the other's caches warm.
    const lookups: { path: string; find: number; findSysfs: number } = { path: '', find: 0, findSysfs: 0 };
    for (const way of i % 2 === 0 ? (['sysfs', 'udev'] as const) : (['udev', 'sysfs'] as const)) {
      const t0 = performance.now();
      if (way === 'sysfs') {
        const viaSysfs = findPort(PORT, { devRoot: noUdev });
        lookups.findSysfs = performance.now() - t0;
        if (!viaSysfs.startsWith(`${noUdev}/vport`)) throw new Error(`the sysfs search found ${viaSysfs}`);
      } else {
        lookups.path = findPort(PORT);
        lookups.find = performance.now() - t0;
      }
    }
    const { path, find, findSysfs } = lookups;
    let t = performance.now();
    t = performance.now();
    const channel = await openChannel(path);
    const open = performance.now() - t;
    let ping = 0;
    let hello = 0;
    let request = 0;
    try {
      const decoder = new FrameDecoder({ from: 'host' });
      const nonce = `bench${i}x${Math.random().toString(36).slice(2, 10)}`;
      // Frames are encoded before each window: a window is the port and the host, and our reading of the reply.
      const helloFrame = encodeHello({ role: 'guest', versions: [1], nonce }, 4096);
      t = performance.now();
      // As submit() does by default: HELLO alone (the marker only on a retry).
      await channel.write(helloFrame);
      await until(channel, decoder, (m) => m.type === 'HELLO' && m.body.role === 'host' && m.body.nonce === nonce);
      hello = performance.now() - t;
      const requestFrame = encodeRequest(1, { argv: [], env: {}, measurement }, 4096);
      t = performance.now();
      await channel.write(requestFrame);
      const final = await until(channel, decoder, (m) => m.requestId === 1 && (m.type === 'EXIT' || m.type === 'DENIED' || m.type === 'ERROR'));
      request = performance.now() - t;
      if (final.type !== 'EXIT') throw new Error(`request ended with ${final.type}: ${JSON.stringify('body' in final ? final.body : null)}`);
      t = performance.now();
      await channel.write(encodePing(7));
      await until(channel, decoder, (m) => m.type === 'PONG' && m.requestId === 7);
      ping = performance.now() - t;
    } finally {
      t = performance.now();
      channel.close();
    }
    const close = performance.now() - t;
    if (i >= WARM_UPS) rows.push([find, open, hello, request, ping, close, findSysfs]);
  }
  return rows;
}

function codec(n: number, measurement: string): number[][] {
  // What the daemon sends (its HELLO announces its limits; the EXIT of a trivial program).
  const hostHello = encodeHello({ role: 'host', version: 1, nonce: 'bench-host-nonce-0123', software: 'virt-offload bench', limits: { maxFrame: 65536, maxUpload: 67108864, maxArgs: 256, maxArgBytes: 131072, maxConcurrent: 4, frameTimeoutMs: 10000, uploadTimeoutMs: 300000 } });
  const exit = encodeExit(1, { exitCode: 0, signal: null, durationMs: 3, limitsHit: { wall: false, memory: false, pids: false, output: false }, measurement, name: 'truetiny', version: '1' });
  const rows: number[][] = [];
  for (let i = 0; i < n + WARM_UPS; i++) {
    const nonce = crypto.randomUUID().replaceAll('-', '');
    // As submit() makes them: a 32-character nonce, both frames checked against MIN_FRAME, the
    // REQUEST named after the HELLO; one decoder reads the host's HELLO and then the EXIT.
    let t = performance.now();
    encodeHello({ role: 'guest', versions: [1], nonce, software: 'virt-offload/0.0.0' }, MIN_FRAME);
    const hello = performance.now() - t;
    t = performance.now();
    encodeRequest(1, { argv: [], env: {}, measurement, session: nonce }, MIN_FRAME);
    const request = performance.now() - t;
    const decoder = new FrameDecoder({ from: 'host' });
    t = performance.now();
    if (decoder.feed(hostHello).length !== 1) throw new Error('the host HELLO did not decode');
    const decHello = performance.now() - t;
    t = performance.now();
    if (decoder.feed(exit).length !== 1) throw new Error('the EXIT did not decode');
    const decExit = performance.now() - t;
    if (i >= WARM_UPS) rows.push([hello, request, decHello, decExit]);
  }
  return rows;
}

async function cost(n: number, file: string): Promise<number[][]> {
  const rows: number[][] = [];
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    // Two 1 MiB buffers taking turns, as the client's.
    const buffers = [new Uint8Array(1 << 20), new Uint8Array(1 << 20)];
    for (let i = 0; i < n + 1; i++) {
      let read = 0;
      let crc = 0;
      let c = 0;
      for (let at = 0, turn = 0; at < size; turn++) {
        const block = buffers[turn % 2]!.subarray(0, Math.min(1 << 20, size - at));
        let t = performance.now();
        const { bytesRead } = await handle.read(block, 0, block.length, at);
        read += performance.now() - t;
        t = performance.now();
        for (let p = 0; p < bytesRead; p += 65512) c ^= crc32(block.subarray(p, Math.min(bytesRead, p + 65512)));
        crc += performance.now() - t;
        at += bytesRead;
      }
      if (c === 0x12345678) process.stdout.write('');
      if (i >= 1) rows.push([read, crc]);
    }
  } finally {
    await handle.close();
  }
  return rows;
}

async function main(): Promise<void> {
  const [mode, count, arg] = process.argv.slice(2);
  const n = Number(count);
  // What submit() does first; `parts` drives lib/protocol by hand and must checksum alike.
  useNativeCodecs();
  let samples: number[] | number[][];
  if (mode === 'rtt') samples = await rtt(n);
  else if (mode === 'copy') samples = await copyFile(n, arg!);
  else if (mode === 'writes') samples = await writes(n, Number(arg));
  else if (mode === 'submit') samples = await submits(n, WARM_UPS, { measurement: arg! });
  else if (mode === 'parts') samples = await parts(n, arg!);
  else if (mode === 'upload') samples = await submits(n, 1, { file: arg! });
  else if (mode === 'cost') samples = await cost(n, arg!);
  else if (mode === 'codec') samples = codec(n, arg!);
  else throw new Error(`unknown mode ${mode}`);
  process.stdout.write(`BENCH-RESULT ${JSON.stringify({ mode, samples })}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stdout.write(`BENCH-FAILED ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
