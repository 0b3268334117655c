// `virt-offload policy check|list|show|diff` as a user runs them: the built CLI
// (dist/virt-offload.cjs, `npm run build`) against real git repositories and SSH-signed commits.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { repoRoot, requireTool } from '../../testbed/tools.js';
import { allowedSigners, GROUPS, helloV1, m, makeKey, makeRepo, scratchDir } from '../policy/loader-repo.js';

const cli = join(repoRoot, 'dist/virt-offload.cjs');
const { dir: scratch, cleanup } = scratchDir('vo-policy-cli-');
test.after(cleanup);
let counter = 0;
const fresh = (name: string) => join(scratch, `${name}-${++counter}`);

function vo(args: string[], cwd = scratch) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const TOOL = `binary tool\nvms all\nversion 1 approved ${m(10)}\n`;

/** Two commits: the second supersedes hello 1.0 by 1.1, revokes tool 1 and lets vm:extra run hello. */
function historyRepo() {
  const repo = makeRepo(fresh('history'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  repo.write('binaries/tool.policy', TOOL);
  const first = repo.commit('first');
  repo.write(
    'binaries/hello.policy',
    helloV1().replace('vms group:build', 'vms group:build vm:extra').replace('1.0 approved', '1.0 superseded by=1.1') + `version 1.1 approved ${m(2)}\n`,
  );
  repo.write('binaries/tool.policy', TOOL.replace('approved', 'revoked reason="leaks secrets"'));
  const second = repo.commit('second');
  return { repo, first, second };
}

test('check: exit 0 and a summary naming the commit', () => {
  const { repo, second } = historyRepo();
  const r = vo(['policy', 'check', repo.dir]);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, `policy OK: 2 binaries, 3 versions, 3 measurements, commit ${second.slice(0, 12)}\n`);
  // --repo, as the other policy commands take it; both at once only if they agree.
  assert.is(vo(['policy', 'check', '--repo', repo.dir]).stdout, r.stdout);
  assert.is(vo(['policy', 'check', repo.dir, '--repo', repo.dir]).stdout, r.stdout);
  const both = vo(['policy', 'check', repo.dir, '--repo', scratch]);
  assert.is(both.status, 2);
  assert.match(both.stderr, /give the repository once/);
  const j = vo(['policy', 'check', '--json'], repo.dir);
  assert.is(j.status, 0, j.stderr);
  const obj = JSON.parse(j.stdout) as Record<string, unknown>;
  assert.equal([obj.ok, obj.commit, obj.binaries, obj.versions, obj.measurements, obj.uncommitted], [true, second, 2, 3, 3, false]);
  writeFileSync(join(repo.dir, 'binaries/tool.policy'), TOOL);
  assert.match(vo(['policy', 'check', repo.dir]).stdout, /commit [0-9a-f]{12} \+ uncommitted changes\n$/);
});

test('check: exit 1 with every error as file:line: message, paths relative to DIR', () => {
  const repo = makeRepo(fresh('broken'));
  repo.write('policies/groups.policy', GROUPS);
  repo.write('policies/binaries/hello.policy', `${helloV1()}version 1.1 aproved ${m(3)}\n`);
  repo.write('policies/binaries/tool.policy', `binary tool\nvms group:nope\nversion 1 approved ${m(1)}\n`);
  repo.commit('broken');
  const r = vo(['policy', 'check', join(repo.dir, 'policies')]);
  assert.is(r.status, 1);
  const lines = r.stdout.trim().split('\n');
  assert.is(lines.length, 3, r.stdout);
  assert.match(lines[0]!, /^binaries\/hello\.policy:7: version 1\.1: unknown status 'aproved'/);
  assert.match(lines[1]!, /^binaries\/tool\.policy:2: vms: group:nope is not defined$/);
  assert.match(lines[2]!, new RegExp(`^binaries/tool\\.policy:3: version 1: ${m(1)} is already listed for hello 1\\.0 at binaries/hello\\.policy:6$`));
  assert.match(r.stderr, /the policy has 3 errors \(listed above\)\n/);
  const listed = vo(['policy', 'list', '--repo', join(repo.dir, 'policies')]);
  assert.is(listed.status, 1);
  assert.match(listed.stderr, /\nvirt-offload: the policy has 3 errors \(run `virt-offload policy check`\)\n$/);
  const j = vo(['policy', 'check', '--json', join(repo.dir, 'policies')]);
  assert.is(j.status, 1);
  const obj = JSON.parse(j.stdout) as { ok: boolean; errors: { file: string; line: number; message: string }[] };
  assert.is(obj.ok, false);
  assert.equal(obj.errors.map((e) => `${e.file}:${e.line}`), ['binaries/hello.policy:7', 'binaries/tool.policy:2', 'binaries/tool.policy:3']);
});

test('check: usage errors exit 2; a missing directory exits 1 naming it; an empty one passes with a warning', () => {
  const empty = fresh('empty');
  mkdirSync(empty);
  const e = vo(['policy', 'check', empty]);
  assert.is(e.status, 0, e.stderr);
  assert.is(e.stdout, 'policy OK: 0 binaries, 0 versions, 0 measurements, not a git commit\n');
  assert.match(e.stderr, /warning: no \*\.policy files under /);
  assert.is(vo(['policy', 'check', '--bogus']).status, 2);
  const r = vo(['policy', 'check', join(scratch, 'does-not-exist')]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /does-not-exist: no such file/);
});

test('check --require-signed: a good signature passes, unsigned and foreign-key commits fail naming the commit', () => {
  const keys = fresh('keys');
  mkdirSync(keys);
  const trusted = makeKey(keys, 'trusted');
  const stranger = makeKey(keys, 'stranger');
  const signers = allowedSigners(keys, 'tester@example.com', trusted.pub);
  const repo = makeRepo(fresh('signed'));
  repo.write('binaries/tool.policy', TOOL);
  const good = repo.commit('signed', trusted.key);
  const ok = vo(['policy', 'check', '--require-signed', signers, repo.dir]);
  assert.is(ok.status, 0, ok.stderr);
  assert.is(ok.stdout, `policy OK: 1 binary, 1 version, 1 measurement, commit ${good.slice(0, 12)} (signature verified)\n`);

  writeFileSync(join(repo.dir, 'binaries/tool.policy'), TOOL.replace('approved', 'revoked reason="x"'));
  const dirty = vo(['policy', 'check', '--require-signed', signers, repo.dir]);
  assert.is(dirty.status, 1);
  assert.match(dirty.stdout, /^binaries\/tool\.policy: has uncommitted changes/);
  assert.match(dirty.stderr, new RegExp(`differ from signed commit ${good}`));

  const unsigned = repo.commit('unsigned');
  const u = vo(['policy', 'check', '--require-signed', signers, repo.dir]);
  assert.is(u.status, 1);
  assert.match(u.stderr, new RegExp(`commit ${unsigned} is not signed`));

  repo.write('binaries/tool.policy', TOOL);
  const foreign = repo.commit('foreign', stranger.key);
  const f = vo(['policy', 'check', '--require-signed', signers, '--json', repo.dir]);
  assert.is(f.status, 1);
  const obj = JSON.parse(f.stdout) as { ok: boolean; error: { commit: string; reason: string } };
  assert.equal([obj.ok, obj.error.commit, obj.error.reason], [false, foreign, 'bad']);
});

test('list: one line per version with status; --json one object per line', () => {
  const { repo } = historyRepo();
  const r = vo(['policy', 'list', '--repo', repo.dir]);
  assert.is(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => l.split(/ {2,}/));
  assert.equal(rows, [
    ['hello', '1.0', 'superseded by=1.1', m(1)],
    ['hello', '1.1', 'approved', m(2)],
    ['tool', '1', 'revoked reason="leaks secrets"', m(10)],
  ]);
  const j = vo(['policy', 'list', '--json'], repo.dir);
  const objs = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(objs.map((o) => [o.name, o.version, o.status, o.supersededBy ?? o.reason ?? null]), [
    ['hello', '1.0', 'superseded', '1.1'],
    ['hello', '1.1', 'approved', null],
    ['tool', '1', 'revoked', 'leaks secrets'],
  ]);
  assert.equal(objs[0]!.measurements, [m(1)]);
});

test('show: versions, measurements, limits, VMs; an unknown name exits 1 with close names', () => {
  const { repo } = historyRepo();
  const r = vo(['policy', 'show', 'hello', '--repo', repo.dir]);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^binary hello {2}\(binaries\/hello\.policy:2, commit [0-9a-f]{12}\)\n/);
  assert.match(r.stdout, /\ninterpreter none\n/);
  assert.match(r.stdout, /\nlimits wall=10s memory=256M output=16M pids=64 args=64 argbytes=64K cpu=100%\n/);
  assert.match(r.stdout, /\nvms group:build vm:extra\n {2}which is: vm:build-01 vm:build-02 vm:extra\n/);
  assert.match(r.stdout, new RegExp(`\\n {2}1\\.0 {2}superseded by=1\\.1 {2}\\(line 6\\)\\n {4}${m(1)}\\n {2}1\\.1 {2}approved {2}\\(line 7\\)\\n {4}${m(2)}\\n$`));
  const j = JSON.parse(vo(['policy', 'show', 'tool', '--json', '--repo', repo.dir]).stdout) as Record<string, unknown>;
  assert.equal([j.name, j.vms, j.scope, (j.limits as Record<string, string>).wall], ['tool', ['all'], ['all'], '30s']);
  const miss = vo(['policy', 'show', 'helo', '--repo', repo.dir]);
  assert.is(miss.status, 1);
  assert.is(miss.stdout, '');
  assert.match(miss.stderr, /no binary named 'helo' in the policy; did you mean: hello\?/);
});

test('diff between two real commits: approved, superseded, revoked and re-scoped lines; --json array', () => {
  const { repo, first, second } = historyRepo();
  const r = vo(['policy', 'diff', first, second, '--repo', repo.dir]);
  assert.is(r.status, 0, r.stderr);
  assert.is(
    r.stdout,
    [
      'hello may now also run on vm:extra',
      'hello 1.0 superseded by 1.1 (was approved)',
      `hello 1.1 approved: ${m(2)}`,
      'tool 1 revoked: leaks secrets (was approved)',
      '',
    ].join('\n'),
  );
  assert.match(r.stderr, new RegExp(`${first} \\(${first.slice(0, 12)}\\) → ${second}`));
  const j = vo(['policy', 'diff', 'HEAD~1', 'HEAD', '--json'], repo.dir);
  assert.is(j.status, 0, j.stderr);
  const changes = JSON.parse(j.stdout) as { kind: string; name: string; version?: string; added?: string[] }[];
  assert.equal(changes.map((c) => [c.kind, c.name, c.version ?? null]), [
    ['re-scoped', 'hello', null],
    ['superseded', 'hello', '1.0'],
    ['approved', 'hello', '1.1'],
    ['revoked', 'tool', '1'],
  ]);
  assert.equal(changes[0]!.added, ['vm:extra']);
});

test('diff defaults: clean tree → HEAD~1 vs HEAD; dirty tree → HEAD vs the work tree', () => {
  const { repo } = historyRepo();
  const clean = vo(['policy', 'diff'], repo.dir);
  assert.is(clean.status, 0, clean.stderr);
  assert.is(clean.stdout.trim().split('\n').length, 4);
  assert.match(clean.stderr, /^policy diff: HEAD~1 \(/);
  repo.write('binaries/tool.policy', TOOL.replace('approved', 'revoked reason="leaks secrets"') + `version 2 approved ${m(11)}\n`);
  const dirty = vo(['policy', 'diff', '--repo', repo.dir]);
  assert.is(dirty.stdout, `tool 2 approved: ${m(11)}\n`);
  assert.match(dirty.stderr, /HEAD \([0-9a-f]{12}\) → the work tree: 1 change\n/);
});

test('diff: a revision that does not build exits 1 with its errors prefixed by the revision; unknown revisions exit 1', () => {
  const { repo, second } = historyRepo();
  repo.write('binaries/tool.policy', 'binary tool\nversion 1 aproved\n');
  repo.commit('broken');
  const r = vo(['policy', 'diff', second, 'HEAD', '--repo', repo.dir]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /^HEAD:binaries\/tool\.policy:2: /);
  assert.match(r.stderr, /virt-offload: revision HEAD does not build \(1 error\)\n$/, 'the summary after the list ends without a colon');
  const u = vo(['policy', 'diff', 'nope', '--repo', repo.dir]);
  assert.is(u.status, 1);
  assert.match(u.stderr, /'nope' names no commit/);
  const opt = vo(['policy', 'diff', '--repo', repo.dir, '--', '--upload-pack=x']);
  assert.is(opt.status, 1);
  assert.match(opt.stderr, /starts with '-'/);
});

// ---- examples/policy-ci.yml ------------------------------------------------------------

/** The `run: |` blocks of a workflow, dedented, keyed by the step's `- name:` (no YAML library: a plain scan). */
function runBlocks(yaml: string): Map<string, string> {
  const blocks = new Map<string, string>();
  const lines = yaml.split('\n');
  let step = '';
  for (let i = 0; i < lines.length; i++) {
    const name = /^\s*- name: (.+)$/.exec(lines[i]!);
    if (name) step = name[1]!;
    const start = /^(\s*)run: \|$/.exec(lines[i]!);
    if (!start) continue;
    const body: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > start[1]!.length)) body.push(lines[++i]!);
    const indent = Math.min(...body.filter((l) => l.trim() !== '').map((l) => l.search(/\S/)));
    blocks.set(step, `${body.map((l) => l.slice(indent)).join('\n').trimEnd()}\n`);
  }
  return blocks;
}

test('examples/policy-ci.yml: full history, node 20, shell steps that parse, and its diff step works on a real repo', () => {
  const yaml = readFileSync(join(repoRoot, 'examples/policy-ci.yml'), 'utf8');
  assert.not.match(yaml, /\t/, 'YAML forbids tabs for indentation');
  assert.match(yaml, /\n {10}fetch-depth: 0\n/);
  assert.match(yaml, /\n {10}node-version: 20\n/);
  assert.match(yaml, /\n {10}virt-offload policy check \.\n/);
  // Untrusted names reach scripts only through the environment.
  for (const [step, script] of runBlocks(yaml)) assert.not.match(script, /\$\{\{/, `step "${step}" splices an expression into its script`);
  const blocks = runBlocks(yaml);
  assert.ok(blocks.size >= 4, `found ${blocks.size} run blocks`);
  const bash = requireTool('bash', 'bash');
  for (const [step, script] of blocks) {
    const syntax = spawnSync(bash, ['-n'], { input: script, encoding: 'utf8' });
    assert.is(syntax.status, 0, `step "${step}": ${syntax.stderr}`);
  }

  // Run the diff step as Actions would: PATH has `virt-offload`, origin/<base> exists.
  const { repo, first } = historyRepo();
  repo.git('update-ref', 'refs/remotes/origin/main', first);
  const bin = fresh('bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'virt-offload'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`);
  chmodSync(join(bin, 'virt-offload'), 0o755);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, BASE_REF: 'main' };
  const r = spawnSync(bash, ['-e', '-c', blocks.get('policy diff')!], { cwd: repo.dir, env, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const md = readFileSync(join(repo.dir, 'policy-diff.md'), 'utf8');
  assert.match(md, /^### Policy changes \(`virt-offload policy diff origin\/main HEAD`\)\n\n~~~~\n/);
  assert.match(md, /\nhello 1\.0 superseded by 1\.1 \(was approved\)\n/);
  assert.match(md, /\ntool 1 revoked: leaks secrets \(was approved\)\n~~~~\n$/);
  const check = spawnSync(bash, ['-e', '-c', blocks.get('policy check')!], { cwd: repo.dir, env, encoding: 'utf8' });
  assert.is(check.status, 0, check.stderr);
  assert.match(check.stdout, /^policy OK: 2 binaries/);
});

test.run();
