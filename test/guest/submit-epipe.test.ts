// `virt-offload submit … | head`: the reader closing the CLI's stdout cancels the request on the
// host (CANCEL, not a program left running to its wall limit) and the CLI exits 141. The built
// CLI bundle against the fake host of submit.test.ts, over a unix socket standing in for the port.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot } from '../../testbed/tools.js';
import { startFakeHost } from './fake-host.js';

const M1 = `sha256:${'cd'.repeat(32)}`;

test('stdout closed by its reader: CANCEL sent, exit 141', async () => {
  let timer: NodeJS.Timeout | undefined;
  const host = await startFakeHost({
    onRun: (ctx) => {
      // A program that keeps printing until it is stopped.
      timer = setInterval(() => ctx.stdout('line\n'), 10);
    },
  });
  try {
    const child = spawn(process.execPath, [join(repoRoot, 'dist/virt-offload.cjs'), 'submit', '--port', host.path, '--measurement', M1], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Like `head -1`: read the first output, then close the pipe.
    await new Promise<void>((done) => child.stdout.once('data', () => done()));
    child.stdout.destroy();
    const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
    assert.is(code, 141, `exit code; stderr: ${stderr}`);
    assert.ok(host.received.some((m) => m.type === 'CANCEL'), `CANCEL sent: ${host.received.map((m) => m.type).join(',')}`);
  } finally {
    clearInterval(timer);
    await host.close();
  }
});

test.run();
