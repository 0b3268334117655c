// `virt-offload policy add | update | revoke` as a user runs them: the built CLI in a child
// process, on a scratch copy of the example repository, with real gcc binaries and real
// xdelta3 deltas. Every written repository is parsed again with the core (buildSnapshot).
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildSnapshot, type PolicySnapshot, type PolicySource } from '../../lib/policy/index.js';
import { repoRoot, requireTool, run, scratchDir } from '../../testbed/tools.js';

const cli = join(repoRoot, 'dist/virt-offload.cjs');
const gcc = requireTool('gcc', 'gcc');
const xdelta3 = requireTool('xdelta3', 'xdelta3');
const { dir, cleanup } = scratchDir('vo-policy-write-');
test.after(cleanup);

function vo(args: readonly string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function build(name: string, body: string): string {
  const c = join(dir, `${name}.c`);
  writeFileSync(c, `#include <stdio.h>\nint main(int argc, char **argv) { (void)argv; ${body} return argc > 5; }\n`);
  run(gcc, ['-O1', '-o', join(dir, name), c]);
  return join(dir, name);
}
const v1 = build('tool-1.0', 'puts("tool 1.0");');
const v2 = build('tool-1.1', 'puts("tool 1.1: a longer message than before"); fflush(stdout);');
const v3 = build('tool-1.2', 'puts("tool 1.2"); puts("second line");');
const patch12 = join(dir, 'tool-1.0-1.1.vcdiff');
run(xdelta3, ['-e', '-f', '-A', '-S', 'none', '-n', '-s', v1, v2, patch12]);

function measureCli(path: string): string {
  const r = vo(['measure', path]);
  assert.is(r.status, 0, r.stderr);
  return r.stdout.split(' ')[0]!;
}

let repoCount = 0;
/** A fresh copy of the project's example repository. */
function freshRepo(): string {
  const repo = join(dir, `repo-${repoCount++}`);
  cpSync(join(repoRoot, 'policies'), repo, { recursive: true });
  return repo;
}

function readRepo(repo: string): PolicySource[] {
  const out: PolicySource[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(join(repo, rel), { withFileTypes: true })) {
      const path = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory() && !e.name.startsWith('.')) walk(path);
      else if (e.isFile() && e.name.endsWith('.policy')) out.push({ path, text: readFileSync(join(repo, path), 'utf8') });
    }
  };
  walk('');
  return out;
}

function snapshotOf(repo: string): PolicySnapshot {
  const r = buildSnapshot(readRepo(repo));
  if (!r.ok) assert.unreachable(`repository does not build: ${r.errors.map((e) => e.message).join('; ')}`);
  return (r as { snapshot: PolicySnapshot }).snapshot;
}

function filesUnchanged(repo: string, before: readonly PolicySource[]): void {
  assert.equal(readRepo(repo), before);
}

test('add creates binaries/N.policy with the measured line; --json says what was written; no --vm warns', () => {
  const repo = freshRepo();
  const m1 = measureCli(v1);
  const r = vo(['policy', 'add', v1, '--name', 'tool', '--version', '1.0', '--vm', 'group:build', 'vm:extra-01', '--repo', repo, '--json']);
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.is(out.file, 'binaries/tool.policy');
  assert.is(out.created, true);
  assert.is(out.measurement, m1);
  const text = readFileSync(join(repo, 'binaries/tool.policy'), 'utf8');
  assert.is(text, `binary tool\nvms group:build vm:extra-01\nversion 1.0 approved ${m1}\n`);
  assert.equal(out.lines, [{ file: 'binaries/tool.policy', line: 3, text: `version 1.0 approved ${m1}` }]);
  const e = snapshotOf(repo).index.get(m1)!;
  assert.is(e.name, 'tool');
  assert.is(e.status, 'approved');
  assert.ok(e.scope.names.has('build-01') && e.scope.names.has('extra-01'));

  const plain = vo(['policy', 'add', v3, '--name', 'other', '--version', '2', '--repo', repo]);
  assert.is(plain.status, 0, plain.stderr);
  assert.match(plain.stdout, /^created binaries\/other\.policy: approved other 2 \(sha256:[0-9a-f]{64}\)\n  binaries\/other\.policy:2: version 2 approved sha256:/);
  assert.match(plain.stderr, /warning: no --vm given: .*no VM may run other/);
  assert.is(readFileSync(join(repo, 'binaries/other.policy'), 'utf8').includes('vms'), false);
  snapshotOf(repo);
});

test('policy add of a file the host cannot run without an interpreter line says so; an ELF gets no such warning', () => {
  const repo = freshRepo();
  const script = join(dir, 'notes.sh');
  writeFileSync(script, '#!/bin/sh\necho report\n');
  const r = vo(['policy', 'add', script, '--name', 'notes', '--version', '1', '--vm', 'all', '--repo', repo]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, `warning: ${script} is not a binary the measurement core knows (a script?), and notes has no interpreter line: the host runs only ELF executables without one; add 'interpreter PATH'`);
  const elf = vo(['policy', 'add', v1, '--name', 'mytool', '--version', '1', '--vm', 'all', '--repo', repo]);
  assert.is(elf.status, 0, elf.stderr);
  assert.not.match(elf.stderr, 'interpreter');
});

test('add to an existing binary appends after the last version and keeps every comment byte for byte', () => {
  const repo = freshRepo();
  const before = readFileSync(join(repo, 'binaries/hello.policy'), 'utf8');
  const r = vo(['policy', 'add', v2, '--name', 'hello', '--version', '1.3', '--repo', repo]);
  assert.is(r.status, 0, r.stderr);
  const after = readFileSync(join(repo, 'binaries/hello.policy'), 'utf8');
  assert.is(after, `${before}version 1.3 approved ${measureCli(v2)}\n`);
  assert.match(r.stdout, /binaries\/hello\.policy:11: version 1\.3 approved/);
  assert.is(snapshotOf(repo).binaries.get('hello')!.versions.get('1.3')!.status, 'approved');
});

test('add refuses a measurement that is already listed, naming where; nothing is written', () => {
  const repo = freshRepo();
  assert.is(vo(['policy', 'add', v1, '--name', 'tool', '--version', '1.0', '--repo', repo]).status, 0);
  const before = readRepo(repo);
  const r = vo(['policy', 'add', v1, '--name', 'again', '--version', '9', '--repo', repo]);
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`${measureCli(v1)} is already listed at binaries/tool\\.policy:2 as tool 1\\.0 \\(approved\\)`));
  filesUnchanged(repo, before);
  // The same version twice, and --vm that would re-scope an existing binary.
  const dup = vo(['policy', 'add', v2, '--name', 'tool', '--version', '1.0', '--repo', repo]);
  assert.is(dup.status, 1);
  assert.match(dup.stderr, /tool already has a version 1\.0/);
  const scope = vo(['policy', 'add', v2, '--name', 'hello', '--version', '2.0', '--vm', 'vm:x', '--repo', repo]);
  assert.is(scope.status, 2);
  assert.match(scope.stderr, /--vm: hello already exists \(binaries\/hello\.policy\) with vms group:builders/);
  filesUnchanged(repo, before);
});

test('usage errors exit 2 (bad name, bad version, bad --vm, missing option) and write nothing', () => {
  const repo = freshRepo();
  const before = readRepo(repo);
  for (const args of [
    ['policy', 'add', v1, '--name', 'Tool', '--version', '1', '--repo', repo],
    ['policy', 'add', v1, '--name', 'tool', '--version', '1 0', '--repo', repo],
    ['policy', 'add', v1, '--name', 'tool', '--version', '1', '--vm', 'build-01', '--repo', repo],
    ['policy', 'add', v1, '--name', 'tool', '--version', '1', '--vm', 'all', 'vm:a', '--repo', repo],
    ['policy', 'add', v1, '--version', '1', '--repo', repo],
    ['policy', 'update', 'hello', '--version', '1.3', '--repo', repo],
    ['policy', 'update', 'hello', '--version', '1.3', '--binary', v1, '--patch', patch12, '--repo', repo],
    ['policy', 'update', 'hello', '--version', '1.3', '--patch', patch12, '--repo', repo],
    ['policy', 'revoke', 'hello', '--version', '1.2', '--reason', '', '--repo', repo],
    ['policy', 'revoke', 'hello', '--version', '1.2', '--reason', 'two\nlines', '--repo', repo],
  ]) {
    const r = vo(args);
    assert.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  filesUnchanged(repo, before);
});

test('a missing input file or a broken repository exits 1 with the file named', () => {
  const repo = freshRepo();
  const missing = vo(['policy', 'add', join(dir, 'nope'), '--name', 'tool', '--version', '1', '--repo', repo]);
  assert.is(missing.status, 1);
  assert.match(missing.stderr, /nope: no such file/);
  writeFileSync(join(repo, 'binaries/broken.policy'), 'binary broken\nversion 1 aproved sha256:00\n');
  const r = vo(['policy', 'add', v1, '--name', 'tool', '--version', '1', '--repo', repo]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /has \d+ errors?; fix them before editing it[\s\S]*binaries\/broken\.policy:2:/);
});

test('update --binary: the new version is approved and the single approved one superseded by it, in one write', () => {
  const repo = freshRepo();
  const before = readFileSync(join(repo, 'binaries/hello.policy'), 'utf8');
  const r = vo(['policy', 'update', 'hello', '--version', '1.3', '--binary', v2, '--repo', repo, '--json']);
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.is(out.supersedes, '1.2');
  const m2 = measureCli(v2);
  assert.is(out.measurement, m2);
  const hello = snapshotOf(repo).binaries.get('hello')!;
  assert.is(hello.versions.get('1.2')!.status, 'superseded');
  assert.is(hello.versions.get('1.2')!.supersededBy, '1.3');
  assert.is(hello.versions.get('1.3')!.status, 'approved');
  assert.equal(hello.versions.get('1.3')!.measurements, [m2]);
  // Only the 1.2 line changed and one line was added; the comments are untouched.
  const after = readFileSync(join(repo, 'binaries/hello.policy'), 'utf8');
  const oldLines = before.trimEnd().split('\n');
  const newLines = after.trimEnd().split('\n');
  assert.is(newLines.length, oldLines.length + 1);
  const changed = oldLines.filter((l, i) => newLines[i] !== l);
  assert.is(changed.length, 1);
  assert.match(changed[0]!, /^version 1\.2 approved /);
  assert.ok(newLines.includes(changed[0]!.replace('approved', 'superseded by=1.3')));
});

test('update --patch --from --base: the measurement written equals `virt-offload measure` of the new binary', () => {
  const repo = freshRepo();
  assert.is(vo(['policy', 'add', v1, '--name', 'tool', '--version', '1.0', '--vm', 'all', '--repo', repo]).status, 0);
  const r = vo(['policy', 'update', 'tool', '--version', '1.1', '--patch', patch12, '--from', '1.0', '--base', v1, '--repo', repo]);
  assert.is(r.status, 0, r.stderr);
  const m2 = measureCli(v2);
  assert.is(readFileSync(join(repo, 'binaries/tool.policy'), 'utf8'), `binary tool\nvms all\nversion 1.0 superseded by=1.1 ${measureCli(v1)}\nversion 1.1 approved ${m2}\n`);
  assert.match(r.stdout, /binaries\/tool\.policy:3: version 1\.0 superseded by=1\.1/);
  assert.is(snapshotOf(repo).index.get(m2)!.version, '1.1');
});

test('update --patch refuses a wrong base, an unsupported delta, and a non-approved --from; nothing is written', () => {
  const repo = freshRepo();
  assert.is(vo(['policy', 'add', v1, '--name', 'tool', '--version', '1.0', '--repo', repo]).status, 0);
  const before = readRepo(repo);
  const wrong = vo(['policy', 'update', 'tool', '--version', '1.1', '--patch', patch12, '--from', '1.0', '--base', v3, '--repo', repo]);
  assert.is(wrong.status, 1);
  assert.match(wrong.stderr, /--base .*tool-1\.2: wrong base: it measures sha256:[0-9a-f]{64}, but tool 1\.0 is listed \(binaries\/tool\.policy:2\)/);

  const adler = join(dir, 'adler.vcdiff');
  run(xdelta3, ['-e', '-f', '-A', '-S', 'none', '-s', v1, v2, adler]);
  const a = vo(['policy', 'update', 'tool', '--version', '1.1', '--patch', adler, '--from', '1.0', '--base', v1, '--repo', repo]);
  assert.is(a.status, 1);
  assert.match(a.stderr, /--patch .*adler\.vcdiff: VCDIFF: window 0: .*adler32/);

  const garbage = join(dir, 'garbage.vcdiff');
  writeFileSync(garbage, readFileSync(patch12).subarray(0, 40));
  const g = vo(['policy', 'update', 'tool', '--version', '1.1', '--patch', garbage, '--from', '1.0', '--base', v1, '--repo', repo]);
  assert.is(g.status, 1);
  assert.match(g.stderr, /garbage\.vcdiff: VCDIFF: window 0/);

  const noBase = vo(['policy', 'update', 'tool', '--version', '1.1', '--patch', patch12, '--from', '1.0', '--repo', repo]);
  assert.is(noBase.status, 2);
  assert.match(noBase.stderr, /--patch needs --base FILE: .*host store .* not implemented yet/);

  const revoked = vo(['policy', 'update', 'hello', '--version', '1.3', '--binary', v3, '--from', '1.1', '--repo', repo]);
  assert.is(revoked.status, 1);
  assert.match(revoked.stderr, /hello 1\.1 is revoked, not approved/);
  const unknown = vo(['policy', 'update', 'nosuch', '--version', '1', '--binary', v3, '--repo', repo]);
  assert.is(unknown.status, 1);
  assert.match(unknown.stderr, /no binary nosuch .*binaries: hello, report, tool, wc-wasm/);
  filesUnchanged(repo, before);
});

test('revoke rewrites the status in place with the reason; unknown versions are listed; revoking twice is refused', () => {
  const repo = freshRepo();
  const before = readFileSync(join(repo, 'binaries/report.policy'), 'utf8');
  const r = vo(['policy', 'revoke', 'report', '--version', '2024.3', '--reason', 'leaks "tokens" # not a comment', '--repo', repo]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: report has no approved version left/);
  const after = readFileSync(join(repo, 'binaries/report.policy'), 'utf8');
  assert.is(after, before.replace(/^version 2024\.3 approved /m, 'version 2024.3 revoked reason="leaks \\"tokens\\" # not a comment" '));
  const e = snapshotOf(repo).binaries.get('report')!.versions.get('2024.3')!;
  assert.is(e.status, 'revoked');
  assert.is(e.reason, 'leaks "tokens" # not a comment');

  const again = vo(['policy', 'revoke', 'report', '--version', '2024.3', '--reason', 'x', '--repo', repo]);
  assert.is(again.status, 1);
  assert.match(again.stderr, /already revoked/);
  const unknown = vo(['policy', 'revoke', 'hello', '--version', '7', '--reason', 'x', '--repo', repo, '--json']);
  assert.is(unknown.status, 1);
  assert.match(unknown.stderr, /hello has no version 7 \(versions: 1\.0 \(superseded by 1\.1\), 1\.1 \(revoked\), 1\.2 \(approved\)\)/);
});

test('writes leave no temporary files, keep the file mode, and never replace a symbolic link', () => {
  const repo = freshRepo();
  chmodSync(join(repo, 'binaries/hello.policy'), 0o640);
  assert.is(vo(['policy', 'add', v2, '--name', 'hello', '--version', '1.3', '--repo', repo]).status, 0);
  assert.is(statSync(join(repo, 'binaries/hello.policy')).mode & 0o777, 0o640);
  assert.equal(readdirSync(join(repo, 'binaries')).sort(), ['hello.policy', 'report.policy', 'wc-wasm.policy']);
  renameSync(join(repo, 'binaries/report.policy'), join(repo, 'report.real'));
  symlinkSync('../report.real', join(repo, 'binaries/report.policy'));
  const r = vo(['policy', 'add', v3, '--name', 'report', '--version', '9', '--repo', repo]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /report\.policy is a symbolic link/);
  assert.is(readFileSync(join(repo, 'report.real'), 'utf8').includes('version 9'), false);
});

test('a directory of the repository that is a symbolic link is not written through (the file would land outside)', () => {
  const repo = freshRepo();
  const outside = join(dir, `outside-${repoCount}`);
  mkdirSync(outside);
  symlinkSync(outside, join(repo, 'elsewhere'));
  const r = vo(['policy', 'add', v1, '--name', 'tool', '--version', '1.0', '--repo', repo]);
  // binaries/ is a real directory: a new binary there is fine.
  assert.is(r.status, 0, r.stderr);
  rmSync(join(repo, 'binaries'), { recursive: true });
  symlinkSync(outside, join(repo, 'binaries'));
  const linked = vo(['policy', 'add', v2, '--name', 'other', '--version', '1', '--repo', repo]);
  assert.is(linked.status, 1);
  assert.match(linked.stderr, /binaries is a symbolic link; policy edits are written only to directories inside the repository/);
  assert.equal(readdirSync(outside), []);
});

test.run();
