// Crash consistency: a child process installs and uninstalls in a loop and is killed with
// SIGKILL at random moments. After each kill, before recovery, every file under a final name
// is complete (hashes to its name, 0444) and every manifest has its object; temp files are
// private (0600); nothing is executable. recover() then leaves a store that verify() passes.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { measureFile } from '../../lib/io/index.js';
import { openStore, recover, verify } from '../../lib/store/index.js';
import { scratchDir } from '../../testbed/tools.js';
import { buildHello } from './helpers.js';

const { dir, cleanup } = scratchDir('vo-crash-');
test.after(cleanup);

const ITERATIONS = 30;
const child = new URL('./crash-child.js', import.meta.url).pathname;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Independent check of one object file: whole-file digest with node:crypto (sha256) or trust verify() for blake3. */
function digestOf(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

test('kill -9 at random points over many installs and uninstalls: no partial file, recover + verify pass', async () => {
  const hello = await buildHello(dir);
  const spec: Array<{ path: string; measurement: string; name: string }> = [{ path: hello.debug, measurement: hello.measurement, name: 'hello' }];
  for (let i = 0; i < 5; i++) {
    const path = join(dir, `blob-${i}`);
    writeFileSync(path, randomBytes((1 + i * 2) << 20)); // 1..9 MiB, raw format
    spec.push({ path, measurement: (await measureFile(path)).measurement, name: `blob${i}` });
  }
  spec.push({ path: hello.other, measurement: (await measureFile(hello.other, { algo: 'blake3' })).measurement, name: 'other-b3' });
  const specPath = join(dir, 'spec.json');
  writeFileSync(specPath, JSON.stringify(spec));
  const root = join(dir, 'store');
  openStore(root, { create: true });

  let ops = 0;
  let leftovers = 0; // kills that left a temp file or half an install behind
  const started = Date.now();
  for (let i = 0; i < ITERATIONS; i++) {
    const proc = spawn(process.execPath, [child, root, specPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    // Start the random delay once the child has finished its first operation: on a loaded
    // machine Node's start-up alone can outlast a fixed delay, and then no kill lands mid-work.
    let firstOp: () => void = () => {};
    const working = new Promise<void>((r) => (firstOp = r));
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) firstOp();
    });
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((r) => proc.on('exit', (_code, signal) => r(signal)));
    await Promise.race([working, exited]);
    await sleep(Math.random() * 300);
    proc.kill('SIGKILL');
    const signal = await exited;
    assert.is(signal, 'SIGKILL', `child ended by itself: ${err}`);
    ops += out.split('\n').filter(Boolean).length;

    // The state a restarting daemon finds, before recovery.
    let sawLeftover = false;
    for (const algo of ['sha256', 'blake3']) {
      const objects = join(root, 'objects', algo);
      const manifests = join(root, 'manifests', algo);
      const objectNames = new Set(readdirSync(objects));
      for (const name of objectNames) {
        const st = lstatSync(join(objects, name));
        assert.ok(st.isFile(), `${name} is a regular file`);
        assert.is(st.mode & 0o111, 0, `${algo}/${name} is not executable`);
        if (name.startsWith('.tmp-')) {
          // 0600 while an install writes it; 0444 when the kill came between an install's chmod
          // and rename, or between an uninstall's rename-away and unlink (complete bytes, leaving).
          assert.ok([0o600, 0o444].includes(st.mode & 0o7777), `temp file ${name} has mode ${(st.mode & 0o7777).toString(8)}: private while incomplete, read-only once complete`);
          sawLeftover = true;
          continue;
        }
        assert.is(st.mode & 0o7777, 0o444, `object ${name} is read-only`);
        if (algo === 'sha256') assert.is(digestOf(join(objects, name)), name, `object ${name} is complete`);
      }
      for (const name of readdirSync(manifests)) {
        if (name.startsWith('.tmp-')) {
          sawLeftover = true;
          continue;
        }
        const hex = name.replace(/\.json$/, '');
        assert.ok(objectNames.has(hex), `manifest ${name} has its object`);
        const manifest = JSON.parse(readFileSync(join(manifests, name), 'utf8')) as { measurement: string };
        assert.is(manifest.measurement, `${algo}:${hex}`);
      }
      const withManifest = new Set(readdirSync(manifests).map((n) => n.replace(/\.json$/, '')));
      if ([...objectNames].some((n) => !n.startsWith('.tmp-') && !withManifest.has(n))) sawLeftover = true;
    }
    if (sawLeftover) leftovers++;

    const store = openStore(root);
    recover(store);
    const report = await verify(store);
    assert.ok(report.ok, `iteration ${i}: ${JSON.stringify(report.items.filter((x) => x.status !== 'ok'))}`);
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`  ${ITERATIONS} kills, ${ops} completed operations, ${leftovers} kills left temp files or half an install (recovered), ${seconds.toFixed(1)} s`);
  assert.ok(ops > ITERATIONS, `the child did real work (${ops} operations)`);
  assert.ok(leftovers > 0, 'some kills landed in the middle of an operation');
});

test.run();
