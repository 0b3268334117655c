// The CLI spells its default paths out (so it need not load lib modules at start-up);
// they must stay equal to the libraries' defaults.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_AUDIT_LOG } from '../../lib/audit/index.js';
import { DEFAULT_STORE } from '../../lib/store/index.js';
import { repoRoot } from '../../testbed/tools.js';

const help = (args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'dist/virt-offload.cjs'), ...args, '--help'], { encoding: 'utf8' }).stdout;

test('store gc --help shows the library default store and audit log', () => {
  const text = help(['store', 'gc']).replace(/\s+/g, ' ');
  assert.match(text, `(default: "${DEFAULT_STORE}")`);
  assert.match(text, `(default: "${DEFAULT_AUDIT_LOG}")`);
});

test('audit --help shows the library default audit log', () => {
  assert.match(help(['audit']).replace(/\s+/g, ' '), `(default: "${DEFAULT_AUDIT_LOG}")`);
});

test.run();
