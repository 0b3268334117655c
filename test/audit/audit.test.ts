import { spawn } from 'node:child_process';
import { readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { filterAudit, MAX_RECORD_BYTES, openAuditLog, readAuditLog } from '../../lib/audit/index.js';
import { VirtOffloadError } from '../../lib/errors.js';
import { scratchDir } from '../../testbed/tools.js';

const { dir, cleanup } = scratchDir('vo-audit-');
test.after(cleanup);

test('append writes one JSON line per record, with the time first, mode 0640 in a new directory', () => {
  const path = join(dir, 'a', 'b', 'audit.jsonl');
  const log = openAuditLog(path, { now: () => new Date('2026-11-23T10:00:00Z') });
  log.append({ action: 'uninstall', measurement: 'sha256:' + 'a'.repeat(64), reason: 'line\nbreak' });
  log.append({ decision: 'deny', vm: 'web-01' });
  log.close();
  const lines = readFileSync(path, 'utf8').split('\n');
  assert.is(lines.length, 3);
  assert.is(lines[2], '');
  assert.equal(JSON.parse(lines[0]!), { time: '2026-11-23T10:00:00.000Z', action: 'uninstall', measurement: 'sha256:' + 'a'.repeat(64), reason: 'line\nbreak' });
  assert.is(statSync(path).mode & 0o777, 0o640);
  assert.is(readAuditLog(path).records.length, 2);
});

test('a record over the size limit is refused and nothing is written', () => {
  const path = join(dir, 'big.jsonl');
  const log = openAuditLog(path);
  assert.throws(() => log.append({ argv: 'x'.repeat(MAX_RECORD_BYTES) }), (e: unknown) => e instanceof VirtOffloadError && /larger than/.test(e.message));
  log.close();
  assert.is(statSync(path).size, 0);
});

test('a torn last line (crash mid-write) is ended before the next record and reported by the reader', () => {
  const path = join(dir, 'torn.jsonl');
  writeFileSync(path, '{"time":"t","action":"install"}\n{"time":"t","act');
  const log = openAuditLog(path);
  log.append({ action: 'after-crash' });
  log.close();
  const { records, bad } = readAuditLog(path);
  assert.equal(records.map((r) => r.action), ['install', 'after-crash']);
  assert.equal(bad, [{ line: 2, problem: 'not valid JSON (torn by a crash?)' }]);
});

test('a symbolic link in place of the log is refused', () => {
  const target = join(dir, 'elsewhere');
  writeFileSync(target, '');
  const link = join(dir, 'link.jsonl');
  symlinkSync(target, link);
  assert.throws(() => openAuditLog(link), (e: unknown) => e instanceof VirtOffloadError && /cannot open the audit log/.test(e.message));
});

test('four processes appending at once never interleave inside a line', async () => {
  const path = join(dir, 'concurrent.jsonl');
  const child = new URL('./audit-child.js', import.meta.url).pathname;
  await Promise.all(
    ['w0', 'w1', 'w2', 'w3'].map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          const p = spawn(process.execPath, [child, path, w, '150'], { stdio: 'inherit' });
          p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${w} exited ${code}`))));
        }),
    ),
  );
  const { records, bad } = readAuditLog(path);
  assert.equal(bad, []);
  assert.is(records.length, 600);
  for (const w of ['w0', 'w1', 'w2', 'w3']) {
    const seqs = records.filter((r) => r.writer === w).map((r) => r.seq);
    assert.equal(seqs, Array.from({ length: 150 }, (_, i) => i), `writer ${w} records in order and complete`);
  }
});

test('filterAudit matches every given field', () => {
  const records = [
    { time: '2026-01-01T00:00:00Z', decision: 'deny', vm: 'a', measurement: 'm1' },
    { time: '2026-02-01T00:00:00Z', decision: 'allow', vm: 'a', measurement: 'm2' },
    { time: '2026-03-01T00:00:00Z', decision: 'deny', vm: 'b', measurement: 'm1' },
  ];
  assert.is(filterAudit(records, { decision: 'deny' }).length, 2);
  assert.is(filterAudit(records, { decision: 'deny', vm: 'b' }).length, 1);
  assert.is(filterAudit(records, { since: '2026-02-01T00:00:00Z' }).length, 2);
  assert.is(filterAudit(records, { measurement: 'm3' }).length, 0);
});

test.run();
