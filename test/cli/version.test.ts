import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VERSION } from '../../lib/version.js';
import { repoRoot } from '../../testbed/tools.js';

test('lib/version.ts matches package.json', () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  assert.is(VERSION, pkg.version);
});

const cli = (args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'dist/virt-offload.cjs'), ...args], { encoding: 'utf8' });

test('no subcommand is a usage error (exit 2, help on stderr); asking for help is not (exit 0, stdout)', () => {
  for (const args of [[], ['policy'], ['store'], ['vm'], ['hook']]) {
    const r = cli(args);
    assert.is(r.status, 2, `virt-offload ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, 'Usage: virt-offload', `virt-offload ${args.join(' ')}: help on stderr`);
  }
  for (const args of [['--help'], ['help'], ['help', 'policy'], ['policy', '--help'], ['-V']]) {
    const r = cli(args);
    assert.is(r.status, 0, `virt-offload ${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stdout.length > 0, `virt-offload ${args.join(' ')}: output on stdout`);
  }
});

test.run();
