// The byte channel on its own: a path that is not a socket is opened as a port device
// (O_NONBLOCK, reads and writes retried when they would block), and a process with a read
// pending on it can still exit, which it could not with a read blocked in libuv's pool.
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openChannel } from '../../lib/guest/index.js';
import { repoRoot, requireTool, scratchDir } from '../../testbed/tools.js';

const { dir, cleanup } = scratchDir('vo-channel-');
test.after(cleanup);

function fifo(name: string): string {
  const path = join(dir, name);
  const r = spawnSync(requireTool('mkfifo', 'coreutils'), [path]);
  assert.is(r.status, 0, String(r.stderr));
  return path;
}

test('a FIFO as the port: nothing to read waits (no end of stream), written bytes come back, close ends a pending read', async () => {
  const channel = await openChannel(fifo('loop'));
  assert.ok(channel.device);
  let settled = false;
  const pending = channel.read().then((chunk) => {
    settled = true;
    return chunk;
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.not.ok(settled, 'an empty port is waited on, not taken for the end');
  await channel.write(Uint8Array.of(1, 2, 3));
  assert.equal(Array.from((await pending) ?? []), [1, 2, 3]);
  // More than a pipe holds (64 KiB): the write is retried until the reader has drained it.
  const big = new Uint8Array(200_000).fill(9);
  let got = 0;
  const writing = channel.write(big);
  while (got < big.length) got += ((await channel.read()) ?? new Uint8Array(0)).length;
  await writing;
  assert.is(got, big.length);
  const last = channel.read();
  channel.close();
  assert.is(await last, null);
});

test('a process with a read pending on the port exits when it wants to', async () => {
  const path = fifo('exit');
  const script = join(dir, 'child.mjs');
  const lib = join(repoRoot, 'dist/lib/guest/index.js');
  writeFileSync(script, `import { openChannel } from ${JSON.stringify(lib)};\nconst c = await openChannel(process.argv[2]);\nvoid c.read();\nsetTimeout(() => process.exit(3), 100);\n`);
  const started = Date.now();
  const status = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [script, path], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  // The status alone tells the two cases apart: no bound on node's start-up time here.
  assert.is(status, 3, `exited by itself with its own status after ${Date.now() - started} ms (a SIGKILL after 10 s gives null)`);
});

test.run();
