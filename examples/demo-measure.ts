// `npm run demo:measure`: the measurement alone, with the real CLI on real binaries of this
// host (`npm run demo`, examples/demo.ts, shows the whole offload with a guest): the part
// everything rests on, a measurement that ignores metadata and debug data, but not a single
// byte the loader maps.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync, appendFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = new URL('../virt-offload.cjs', import.meta.url).pathname;
const target = ['/usr/bin/ls', '/bin/ls'].find((p) => spawnSync('test', ['-x', p]).status === 0) ?? process.execPath;
const work = mkdtempSync(join(tmpdir(), 'virt-offload-demo-'));

function vo(args: string[], echo = true): string {
  console.log(`$ virt-offload ${args.join(' ')}${echo ? '' : '   (JSON output read by the demo, not shown)'}`);
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  if (echo) process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (r.status !== 0) throw new Error(`virt-offload ${args.join(' ')} exited with ${r.status}`);
  return r.stdout;
}
const measurementOf = (out: string) => out.split(/\s+/)[0]!;
const sha256File = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

try {
  console.log(`== 1. Measure a real binary (${target}) and explain what the hash covers`);
  const original = measurementOf(vo(['measure', target]));
  const explained = vo(['measure', '--explain', target]).split('\n');
  console.log(`   (${explained.length - 2} ranges listed above: headers and segments kept, the rest zeroed or excluded)\n`);

  console.log('== 2. Metadata outside every segment does not change the measurement');
  const padded = join(work, 'with-trailer');
  copyFileSync(target, padded);
  appendFileSync(padded, Buffer.from('\0debug data, signatures, notes a tool appended\n'.repeat(100)));
  const paddedM = measurementOf(vo(['measure', padded]));
  console.log(`   file sha256 differs: ${sha256File(target) !== sha256File(padded)}; measurement equal: ${paddedM === original}\n`);

  console.log('== 3. The canonical bytes are the measured bytes, and they still run');
  const canonical = join(work, 'canonical');
  vo(['measure', '--canonical', canonical, target]);
  console.log(`   sha256 of the canonical file: sha256:${sha256File(canonical)}`);
  const a = spawnSync(target, ['--version'], { encoding: 'utf8' });
  const b = spawnSync(canonical, ['--version'], { encoding: 'utf8' });
  console.log(`   ${target} --version and the canonical copy print the same: ${a.stdout === b.stdout && a.status === b.status}\n`);

  console.log('== 4. One byte changed inside a loaded segment changes the measurement');
  const json = JSON.parse(vo(['measure', '--json', '--explain', target], false)) as { ranges: { start: number; end: number; disposition: string }[] };
  const kept = json.ranges.filter((r) => r.disposition === 'kept' && r.end - r.start > 4096).at(-1)!;
  const tampered = join(work, 'tampered');
  copyFileSync(target, tampered);
  const at = kept.start + Math.floor((kept.end - kept.start) / 2);
  const fd = openSync(tampered, 'r+');
  writeSync(fd, Buffer.from([readFileSync(target)[at]! ^ 0xff]), 0, 1, at);
  closeSync(fd);
  const tamperedM = measurementOf(vo(['measure', tampered]));
  console.log(`   byte at 0x${at.toString(16)} flipped; measurement differs: ${tamperedM !== original}\n`);

  const ok = paddedM === original && tamperedM !== original && a.stdout === b.stdout;
  console.log(ok ? 'demo: all checks held' : 'demo: a check did NOT hold');
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
