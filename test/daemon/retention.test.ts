// What the daemon holds while a run goes on: an upload's frame payloads are garbage once the
// binary is installed; only the measured image (in the verified cache) stays. A paused request
// that kept them held a second copy of every running upload (up to --max-upload each), and
// every bwrap forked meanwhile copied the page tables of that memory.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, type Daemon } from '../../lib/daemon/index.js';
import { measureFile } from '../../lib/io/index.js';
import { encodeCancel, FrameDecoder, type DecoderEvent } from '../../lib/protocol/index.js';
import { garbageCollector, requireTool, run, scratchDir } from '../../testbed/tools.js';
import { commitPolicy, Guest } from './helpers.js';

const gcc = requireTool('gcc', 'gcc');
requireTool('bwrap', 'bubblewrap');
const scratch = scratchDir('vo-retention-');
let daemon: Daemon | undefined;
let program = '';
let measurement = '';

const gc = garbageCollector();
const collect = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((done) => setImmediate(done));
  }
};

test.before(async () => {
  // 2 MiB of initialised data, so the upload has ~32 DATA frames; it says it runs, then sleeps
  // 20 s (the test cancels it once it has looked).
  const src = join(scratch.dir, 'napper.c');
  writeFileSync(src, '#include <time.h>\n#include <unistd.h>\nchar big[2 << 20] = {1};\nint main(int c, char **v) { (void)v; write(1, "running\\n", 8); struct timespec t = {20, 0}; nanosleep(&t, 0); return big[c] - 1; }\n');
  program = join(scratch.dir, 'napper');
  run(gcc, ['-O1', '-o', program, src]);
  measurement = (await measureFile(program)).measurement;
  const repo = join(scratch.dir, 'policy');
  mkdirSync(repo);
  execFileSync('git', ['init', '-q', repo]);
  commitPolicy(repo, { 'napper.policy': `binary napper\nlimits wall=60s\nvms all\nversion 1 approved ${measurement}\n` }, 'approve the napper');
  daemon = await startDaemon({ runDir: join(scratch.dir, 'run'), policyRepo: repo, storeDir: join(scratch.dir, 'store'), auditLog: join(scratch.dir, 'audit.jsonl'), sandbox: 'bwrap' });
});
test.after(async () => {
  await daemon?.close();
  scratch.cleanup();
});

test('while an uploaded program runs, its frame payloads are garbage (only the measured image is kept)', async () => {
  // Every DATA payload the daemon's decoder hands on, watched through a WeakRef.
  const payloads: WeakRef<Uint8Array>[] = [];
  const feed = FrameDecoder.prototype.feed;
  FrameDecoder.prototype.feed = function (this: FrameDecoder, chunk: Uint8Array): DecoderEvent[] {
    const events = feed.call(this, chunk);
    if (this.from === 'guest') for (const e of events) if (e.kind === 'message' && e.message.type === 'DATA') payloads.push(new WeakRef(e.message.data));
    return events;
  };
  try {
    const g = await Guest.connect(await daemon!.addVm({ name: 'vm-r', uuid: '5e1c2a9e-3b7d-4e58-9a0c-1d2e3f405162' }));
    await g.hello();
    const id = g.send({ bytes: new Uint8Array(readFileSync(program)) });
    // Installed and running: it said so.
    await g.waitFor((m) => m.requestId === id && m.type === 'STDOUT');
    await collect();
    assert.ok(payloads.length >= 16, `${payloads.length} DATA frames seen`);
    const alive = payloads.filter((p) => p.deref() !== undefined).length;
    assert.is(g.messages.some((m) => m.requestId === id && m.type === 'EXIT'), false, 'still running when checked');
    assert.is(alive, 0, `${alive} of ${payloads.length} DATA payloads still reachable during the run`);
    g.write(encodeCancel(id));
    const r = await g.reply(id);
    assert.ok(r.final.type === 'ERROR' && r.final.body.code === 'cancelled', JSON.stringify(r.final));
    // What status reports of it: the image is cached (it may run again), no upload bytes are held.
    const memory = daemon!.status().memory;
    assert.is(memory.uploadsHeldBytes, 0);
    assert.is(memory.imageCache.binaries, 1);
    assert.ok(memory.imageCache.bytes >= 2 << 20, `${memory.imageCache.bytes} bytes cached`);
    g.close();
  } finally {
    FrameDecoder.prototype.feed = feed;
  }
});

test.run();
