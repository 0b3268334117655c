// The policy loader against real git repositories and real SSH-signed commits.
import { closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GitError } from '../../lib/git/index.js';
import { PolicyError } from '../../lib/policy/index.js';
import {
  headCommit,
  LOADER_LIMITS,
  loadPolicySnapshot,
  loadPolicySnapshotAtRevision,
  loadPolicyWorkTree,
  readPolicyFilesAtRevision,
  UnverifiedCommitError,
  uncommittedPolicyChanges,
} from '../../lib/policy/loader.js';
import { run } from '../../testbed/tools.js';
import { allowedSigners, GROUPS, helloV1, m, makeKey, makeRepo, scratchDir } from './loader-repo.js';

const { dir: scratch, cleanup } = scratchDir('vo-loader-');
test.after(cleanup);
let counter = 0;
const fresh = (name: string) => join(scratch, `${name}-${++counter}`);

function errorsOf(fn: () => unknown): { err: PolicyError; lines: string[] } {
  try {
    fn();
  } catch (err) {
    if (err instanceof PolicyError) return { err, lines: err.errors.map((e) => e.message) };
    throw err;
  }
  throw new Error('expected a PolicyError');
}

test('reads nested *.policy files with /-paths, skips hidden dirs and other files, records HEAD', () => {
  const repo = makeRepo(fresh('nested'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  repo.write('binaries/deep/er/tool.policy', `binary tool\nvms all\nversion 2 approved ${m(2)}\n`);
  repo.write('.github/ignored.policy', 'this is not parsed\n');
  repo.write('binaries/.hidden.policy', 'nor this\n');
  repo.write('README.md', 'not a policy\n');
  const commit = repo.commit('first');
  const loaded = loadPolicyWorkTree(repo.dir);
  assert.equal(loaded.files.map((f) => f.path), ['binaries/deep/er/tool.policy', 'binaries/hello.policy', 'groups.policy']);
  assert.is(loaded.commit, commit);
  const snap = loadPolicySnapshot(repo.dir, { loadedAt: '2026-01-01T00:00:00Z' });
  assert.is(snap.commit, commit);
  assert.is(snap.loadedAt, '2026-01-01T00:00:00Z');
  assert.equal([...snap.binaries.keys()], ['hello', 'tool']);
  assert.is(snap.index.get(m(2))?.name, 'tool');
});

test('uncommittedPolicyChanges: edits, untracked, ignored and hidden-from-git *.policy files count; other files do not', () => {
  const repo = makeRepo(fresh('dirty'));
  repo.write('binaries/hello.policy', helloV1());
  repo.write('.gitignore', 'local/\n');
  repo.commit('first');
  assert.is(uncommittedPolicyChanges(repo.dir), false);
  repo.write('README.md', 'not a policy\n');
  assert.is(uncommittedPolicyChanges(repo.dir), false, 'a file the loader does not read');
  repo.write('binaries/extra.policy', helloV1());
  assert.is(uncommittedPolicyChanges(repo.dir), true, 'untracked');
  rmSync(join(repo.dir, 'binaries/extra.policy'));
  repo.write('local/hidden-from-git.policy', helloV1());
  assert.is(uncommittedPolicyChanges(repo.dir), true, 'ignored by .gitignore, still read by the loader');
  rmSync(join(repo.dir, 'local'), { recursive: true });
  assert.is(uncommittedPolicyChanges(repo.dir), false);
  // Texts are compared, not git's idea of them: an edit git was told not to look at counts.
  repo.git('update-index', '--assume-unchanged', 'binaries/hello.policy');
  assert.is(uncommittedPolicyChanges(repo.dir), false, 'assume-unchanged, and unchanged');
  repo.write('binaries/hello.policy', `${helloV1()}# hidden from git status\n`);
  assert.is(uncommittedPolicyChanges(repo.dir), true, 'an edit git was told not to look at');
  repo.git('update-index', '--no-assume-unchanged', 'binaries/hello.policy');
  repo.git('checkout', '--', 'binaries/hello.policy');
  assert.is(uncommittedPolicyChanges(repo.dir), false);
  repo.write('binaries/hello.policy', `${helloV1()}# edited\n`);
  assert.is(uncommittedPolicyChanges(repo.dir), true, 'modified');
  assert.is(uncommittedPolicyChanges(fresh('not-git')), undefined);
});

test('a plain directory loads without a commit; a subdirectory of a repo uses paths relative to it', () => {
  const plain = fresh('plain');
  mkdirSync(join(plain, 'b'), { recursive: true });
  writeFileSync(join(plain, 'b/hello.policy'), helloV1().replace('group:build', 'all'));
  const loaded = loadPolicyWorkTree(plain);
  assert.is(loaded.commit, undefined);
  assert.equal(loaded.files.map((f) => f.path), ['b/hello.policy']);

  const repo = makeRepo(fresh('sub'));
  repo.write('README.md', 'before the policy folder existed\n');
  const before = repo.commit('no policies yet');
  repo.write('policies/groups.policy', GROUPS);
  repo.write('policies/binaries/hello.policy', helloV1());
  repo.write('other/x.policy', 'not under the policy folder\n');
  const commit = repo.commit('with a prefix');
  const sub = loadPolicySnapshot(join(repo.dir, 'policies'));
  assert.is(sub.commit, commit);
  assert.equal(sub.files, ['binaries/hello.policy', 'groups.policy']);
  assert.equal(readPolicyFilesAtRevision(join(repo.dir, 'policies'), 'HEAD').files.map((f) => f.path), ['binaries/hello.policy', 'groups.policy']);
  // At a commit where the folder did not exist yet, it holds no policy (not an error).
  assert.equal(readPolicyFilesAtRevision(join(repo.dir, 'policies'), before), { files: [], commit: before });
});

test('symbolic links: followed inside the tree, refused when they leave it; invalid UTF-8 refused', () => {
  const dir = fresh('links');
  const outside = fresh('outside');
  mkdirSync(join(dir, 'binaries'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'evil.policy'), `binary evil\nvms all\nversion 1 approved ${m(9)}\n`);
  writeFileSync(join(dir, 'real.txt'), GROUPS);
  symlinkSync('../real.txt', join(dir, 'binaries/groups.policy'));
  symlinkSync(join(outside, 'evil.policy'), join(dir, 'evil.policy'));
  writeFileSync(join(dir, 'bad.policy'), Buffer.from([0x62, 0x69, 0xff, 0x0a]));
  const { err, lines } = errorsOf(() => loadPolicySnapshot(dir));
  assert.equal(lines, ['bad.policy: is not valid UTF-8 text', 'evil.policy: is a symbolic link that points outside the policy repository']);
  assert.match(err.message, /2 errors/);
  // loadPolicyWorkTree refuses the same files; the in-tree link alone loads.
  assert.throws(() => loadPolicyWorkTree(dir), (e: unknown) => e instanceof PolicyError && e.errors.length === 2);
});

test('a policy file name with control characters is refused, shown escaped, in the work tree and at a revision', () => {
  const repo = makeRepo(fresh('names'));
  repo.write('binaries/hello.policy', helloV1().replace('group:build', 'all'));
  repo.write('x\nbinaries/forged.policy', 'binary forged\n');
  const commit = repo.commit('a forged name');
  const expected = ['"x\\nbinaries/forged.policy": file name holds control or invisible characters; rename it'];
  assert.equal(errorsOf(() => loadPolicySnapshot(repo.dir)).lines, expected);
  assert.equal(errorsOf(() => readPolicyFilesAtRevision(repo.dir, commit)).lines, expected);
});

test('GIT_DIR and GIT_WORK_TREE of the caller (e.g. a git hook) do not redirect the loader', () => {
  const repo = makeRepo(fresh('target'));
  repo.write('binaries/hello.policy', helloV1().replace('group:build', 'all'));
  const commit = repo.commit('target');
  const other = makeRepo(fresh('other'));
  other.commit('other');
  const saved = { dir: process.env.GIT_DIR, tree: process.env.GIT_WORK_TREE };
  process.env.GIT_DIR = join(other.dir, '.git');
  process.env.GIT_WORK_TREE = other.dir;
  try {
    assert.is(loadPolicyWorkTree(repo.dir).commit, commit);
    assert.equal(readPolicyFilesAtRevision(repo.dir, 'HEAD').files.map((f) => f.path), ['binaries/hello.policy']);
  } finally {
    if (saved.dir === undefined) delete process.env.GIT_DIR;
    else process.env.GIT_DIR = saved.dir;
    if (saved.tree === undefined) delete process.env.GIT_WORK_TREE;
    else process.env.GIT_WORK_TREE = saved.tree;
  }
});

test('a file larger than the bound is refused without being parsed', () => {
  const dir = fresh('big');
  mkdirSync(dir);
  writeFileSync(join(dir, 'big.policy'), Buffer.alloc(LOADER_LIMITS.maxFileBytes + 1, 0x23));
  const { lines } = errorsOf(() => loadPolicySnapshot(dir));
  assert.equal(lines, [`big.policy: is ${LOADER_LIMITS.maxFileBytes + 1} bytes, more than the ${LOADER_LIMITS.maxFileBytes} a policy file may have`]);
});

test('files are read whole at every size around the one-read buffer (256 KiB), the empty one too', () => {
  const dir = fresh('sizes');
  mkdirSync(dir);
  // Comment lines fill each file to its size; a binary line starts it, so every file builds.
  const sizes = [0, 1, 100, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 600 * 1024];
  const texts = new Map<string, string>();
  sizes.forEach((size, i) => {
    const head = size === 0 ? '' : size < 20 ? '#'.repeat(size - 1) + '\n' : `binary s${i}\n`;
    let text = head;
    while (text.length < size) text += `#${'c'.repeat(Math.min(1000, size - text.length - 2))}\n`;
    text = text.slice(0, size);
    texts.set(`s${i}.policy`, text);
    writeFileSync(join(dir, `s${i}.policy`), text);
  });
  const fds = readdirSync('/proc/self/fd').length;
  const loaded = loadPolicyWorkTree(dir).files;
  assert.is(readdirSync('/proc/self/fd').length, fds, 'every file opened is closed');
  assert.equal(loaded.map((f) => f.path), [...texts.keys()].sort());
  for (const f of loaded) assert.ok(f.text === texts.get(f.path), `${f.path}: ${f.text.length} characters read, ${texts.get(f.path)!.length} written`);
});

test('a FIFO is refused as not a regular file, without blocking, when listed as one and when reached through a link (with a writer too)', () => {
  const dir = fresh('fifo');
  mkdirSync(dir);
  run('mkfifo', [join(dir, 'a.policy')]);
  run('mkfifo', [join(dir, 'target')]);
  symlinkSync('target', join(dir, 'b.policy'));
  assert.equal(errorsOf(() => loadPolicyWorkTree(dir)).lines, ['a.policy: is not a regular file', 'b.policy: is not a regular file']);
  // A writer holding it open with bytes waiting: still not read as a file.
  const writer = openSync(join(dir, 'target'), constants.O_RDWR | constants.O_NONBLOCK);
  try {
    writeSync(writer, 'binary b\n');
    assert.equal(errorsOf(() => loadPolicyWorkTree(dir)).lines, ['a.policy: is not a regular file', 'b.policy: is not a regular file']);
  } finally {
    closeSync(writer);
  }
});

test('read errors and policy errors are reported together, sorted, with file:line', () => {
  const repo = makeRepo(fresh('errs'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', `${helloV1()}version 1.1 aproved ${m(3)}\n`);
  writeFileSync(join(repo.dir, 'binaries/zz.policy'), Buffer.from([0xc3, 0x28]));
  const { lines } = errorsOf(() => loadPolicySnapshot(repo.dir));
  assert.is(lines.length, 2);
  assert.match(lines[0]!, /^binaries\/hello\.policy:7: version 1\.1: unknown status 'aproved'/);
  assert.is(lines[1], 'binaries/zz.policy: is not valid UTF-8 text');
});

test('readPolicyFilesAtRevision reads an older commit; bad revisions are refused', () => {
  const repo = makeRepo(fresh('rev'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  const first = repo.commit('first');
  repo.write('binaries/hello.policy', `${helloV1()}version 1.1 approved ${m(4)}\n`);
  const second = repo.commit('second');
  const old = readPolicyFilesAtRevision(repo.dir, first);
  assert.is(old.commit, first);
  assert.equal(old.files.map((f) => f.path), ['binaries/hello.policy', 'groups.policy']);
  assert.ok(!old.files[0]!.text.includes('1.1'));
  assert.is(readPolicyFilesAtRevision(repo.dir, 'HEAD').commit, second);
  assert.ok(readPolicyFilesAtRevision(repo.dir, 'HEAD').files[0]!.text.includes('1.1'));
  assert.throws(() => readPolicyFilesAtRevision(repo.dir, 'no-such-branch'), (e: unknown) => e instanceof GitError && /'no-such-branch' names no commit/.test(e.message));
  assert.throws(() => readPolicyFilesAtRevision(repo.dir, '--output=/tmp/x'), (e: unknown) => e instanceof GitError && /starts with '-'/.test(e.message));
});

test('a revision with symbolic links: in-tree links resolve, escaping links are refused; bad content names the revision', () => {
  const repo = makeRepo(fresh('revlinks'));
  repo.write('data/groups.txt', GROUPS);
  symlinkSync('data/groups.txt', join(repo.dir, 'groups.policy'));
  symlinkSync('../../etc/passwd', join(repo.dir, 'escape.policy'));
  const commit = repo.commit('links');
  const { err, lines } = errorsOf(() => readPolicyFilesAtRevision(repo.dir, commit));
  assert.equal(lines, ['escape.policy: is a symbolic link that points outside the policy repository']);
  assert.match(err.message, new RegExp(`^revision ${commit}`));
  repo.git('rm', '-q', 'escape.policy');
  repo.write('binaries/hello.policy', helloV1().replace('group:build', 'group:missing'));
  repo.commit('broken');
  const atRev = readPolicyFilesAtRevision(repo.dir, 'HEAD');
  assert.equal(atRev.files.map((f) => f.path), ['binaries/hello.policy', 'groups.policy']);
  assert.is(atRev.files[1]!.text, GROUPS, 'the in-tree link reads its target');
  const broken = errorsOf(() => loadPolicySnapshotAtRevision(repo.dir, 'HEAD'));
  assert.match(broken.err.message, /^revision HEAD has 1 error/);
  assert.match(broken.lines[0]!, /^binaries\/hello\.policy:4: vms: group:missing is not defined/);
});

// ---- --require-signed: real SSH signatures ----------------------------------------------

const keys = fresh('keys');
mkdirSync(keys);
const trusted = makeKey(keys, 'trusted');
const stranger = makeKey(keys, 'stranger');
const signers = allowedSigners(keys, 'tester@example.com', trusted.pub);

function signedRepo(): ReturnType<typeof makeRepo> & { head: string } {
  const repo = makeRepo(fresh('signed'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  const head = repo.commit('signed policy', trusted.key);
  return Object.assign(repo, { head });
}

function unverified(fn: () => unknown): UnverifiedCommitError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UnverifiedCommitError) return err;
    throw err;
  }
  throw new Error('expected an UnverifiedCommitError');
}

test('requireSigned accepts a commit signed by an allowed key', () => {
  const repo = signedRepo();
  const snap = loadPolicySnapshot(repo.dir, { requireSigned: signers });
  assert.is(snap.commit, repo.head);
  assert.equal([...snap.binaries.keys()], ['hello']);
  // Changes to files that are not policy files do not matter.
  writeFileSync(join(repo.dir, 'NOTES.md'), 'scratch\n');
  assert.is(loadPolicySnapshot(repo.dir, { requireSigned: signers }).commit, repo.head);
});

test('requireSigned refuses an unsigned commit, naming it', () => {
  const repo = signedRepo();
  repo.write('binaries/hello.policy', `${helloV1()}version 1.1 approved ${m(5)}\n`);
  const head = repo.commit('unsigned change');
  const err = unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers }));
  assert.is(err.reason, 'unsigned');
  assert.is(err.commit, head);
  assert.match(err.message, new RegExp(`^commit ${head} is not signed; refusing to load it$`));
});

test('requireSigned refuses a commit signed by a key not in allowed-signers', () => {
  const repo = signedRepo();
  repo.write('binaries/hello.policy', `${helloV1()}version 1.1 approved ${m(6)}\n`);
  const head = repo.commit('signed by a stranger', stranger.key);
  const err = unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers }));
  assert.is(err.reason, 'bad');
  assert.is(err.commit, head);
  assert.match(err.message, new RegExp(`^commit ${head} has a signature that does not verify against the allowed signers in `));
  assert.match(err.message, /No principal matched/);
});

test('requireSigned: the repository\'s own git config cannot verify for us, nor run anything', () => {
  const repo = signedRepo();
  repo.write('binaries/hello.policy', `${helloV1()}version 1.1 approved ${m(9)}\n`);
  repo.commit('signed by a stranger', stranger.key);
  // A program that "verifies" anything, and one git would run on status: each leaves a mark.
  const marks = join(repo.dir, '..', `marks-${counter}`);
  const fake = join(repo.dir, '..', `fake-${counter}.sh`);
  writeFileSync(fake, `#!/bin/sh\necho ran "$@" >> ${marks}\nexit 0\n`, { mode: 0o755 });
  repo.git('config', 'gpg.ssh.program', fake);
  repo.git('config', 'gpg.program', fake);
  repo.git('config', 'core.fsmonitor', fake);
  repo.git('config', 'core.hooksPath', join(repo.dir, '..'));
  const err = unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers }));
  assert.is(err.reason, 'bad');
  assert.match(err.message, /No principal matched/);
  // The unsigned path and its uncommitted check run git status and friends.
  loadPolicySnapshot(repo.dir);
  assert.is(uncommittedPolicyChanges(repo.dir), false);
  assert.not.ok(existsSync(marks), `git ran ${marks}: ${existsSync(marks) ? readFileSync(marks, 'utf8') : ''}`);
});

test('requireSigned: an object replaced in the store under its id is refused (git itself would read it)', () => {
  const repo = signedRepo();
  const id = repo.git('rev-parse', `${repo.head}:binaries/hello.policy`).trim();
  const path = join(repo.dir, '.git', 'objects', id.slice(0, 2), id.slice(2));
  // The same id, other content: it approves one more version, and the work tree says the same.
  const forged = `${helloV1()}version 6.6 approved ${m(66)}\n`;
  rmSync(path, { force: true });
  writeFileSync(path, deflateSync(Buffer.concat([Buffer.from(`blob ${Buffer.byteLength(forged)}\0`), Buffer.from(forged)])));
  writeFileSync(join(repo.dir, 'binaries/hello.policy'), forged);
  assert.is(repo.git('cat-file', 'blob', id), forged, 'git reads the forged content');
  assert.throws(() => loadPolicySnapshot(repo.dir, { requireSigned: signers }), new RegExp(`object ${id} in .* does not hold what its id says`));
  assert.throws(() => readPolicyFilesAtRevision(repo.dir, 'HEAD'), /does not hold what its id says/);
});

test('requireSigned: git\'s configuration cannot choose another folder of the signed commit (core.worktree)', () => {
  const repo = makeRepo(fresh('worktree'));
  repo.write('policies/groups.policy', GROUPS);
  repo.write('policies/binaries/hello.policy', helloV1());
  repo.write('fixtures/evil.policy', `binary evil\nvms all\nversion 1 approved ${m(13)}\n`);
  repo.commit('policies and fixtures', trusted.key);
  const dir = join(repo.dir, 'policies');
  assert.equal([...loadPolicySnapshot(dir, { requireSigned: signers }).binaries.keys()], ['hello']);
  // git is told the work tree is the policy folder: its prefix becomes '', the whole commit.
  repo.git('config', 'core.worktree', dir);
  mkdirSync(join(dir, 'fixtures'));
  writeFileSync(join(dir, 'fixtures', 'evil.policy'), `binary evil\nvms all\nversion 1 approved ${m(13)}\n`);
  mkdirSync(join(dir, 'policies', 'binaries'), { recursive: true });
  writeFileSync(join(dir, 'policies', 'groups.policy'), GROUPS);
  writeFileSync(join(dir, 'policies', 'binaries', 'hello.policy'), helloV1());
  assert.throws(() => loadPolicySnapshot(dir, { requireSigned: signers }), /is not inside a plain git repository/);
});

test('trees are read as git reads them: 100664 is a plain file; a name twice, or a hidden folder bomb, is handled', () => {
  const repo = signedRepo();
  // A tree with a 100664 entry (old git wrote these; fsck accepts them), made by hand.
  const blob = repo.git('rev-parse', `${repo.head}:binaries/hello.policy`).trim();
  const groups = repo.git('rev-parse', `${repo.head}:groups.policy`).trim();
  const mktree = (lines: string) => run('git', ['mktree'], { cwd: repo.dir, input: lines }).trim();
  const sub = mktree(`100664 blob ${blob}\thello.policy\n`);
  const root = mktree(`040000 tree ${sub}\tbinaries\n100644 blob ${groups}\tgroups.policy\n`);
  const commit = run('git', ['-c', 'user.name=T', '-c', 'user.email=t@example.com', '-c', 'gpg.format=ssh', '-c', `user.signingkey=${trusted.key}`, 'commit-tree', '-S', '-p', repo.head, '-m', '100664', root], { cwd: repo.dir }).trim();
  repo.git('update-ref', 'HEAD', commit);
  assert.equal(readPolicyFilesAtRevision(repo.dir, 'HEAD').files.map((f) => f.path), ['binaries/hello.policy', 'groups.policy']);
  assert.is(loadPolicySnapshot(repo.dir, { requireSigned: signers }).commit, commit);
});

test('uncommittedPolicyChanges runs no filter driver the repository configures (no git status)', () => {
  const repo = makeRepo(fresh('filter'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  repo.commit('first');
  const marker = join(repo.dir, '..', `filtered-${counter}`);
  writeFileSync(join(repo.dir, '.git', 'info', 'attributes'), '*.policy filter=x\n');
  repo.git('config', 'filter.x.clean', `touch ${marker}; cat`);
  repo.write('binaries/hello.policy', `${helloV1()}# edited\n`);
  assert.is(uncommittedPolicyChanges(repo.dir), true);
  loadPolicySnapshot(repo.dir);
  assert.not.ok(existsSync(marker), 'the clean filter ran');
});

test('requireSigned: only an SSH signature counts (an OpenPGP one is refused unread), and one signature header', () => {
  const repo = signedRepo();
  const raw = repo.git('cat-file', 'commit', 'HEAD');
  const ssh = raw.slice(raw.indexOf('gpgsig '), raw.indexOf('-----END SSH SIGNATURE-----') + '-----END SSH SIGNATURE-----'.length + 1);
  const pgp = ' -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n';
  const forge = (body: string): string => {
    const path = join(repo.dir, '..', `commit-${counter}-${body.length}`);
    writeFileSync(path, body);
    const id = run('git', ['hash-object', '-t', 'commit', '-w', path], { cwd: repo.dir }).trim();
    repo.git('update-ref', 'HEAD', id);
    return id;
  };
  forge(raw.replace(ssh, `gpgsig -----BEGIN PGP SIGNATURE-----\n${pgp.split('\n').slice(1).join('\n')}`));
  const pgpErr = unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers }));
  assert.is(pgpErr.reason, 'bad');
  assert.match(pgpErr.message, /not an SSH signature/);
  // gpgsig-sha256 is not the signature header of a SHA-1 repository (git ignores it there).
  forge(raw.replace(ssh, ssh.replace(/^gpgsig /, 'gpgsig-sha256 ')));
  assert.is(unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers })).reason, 'unsigned');
  forge(raw.replace(ssh, `${ssh}${ssh}`));
  assert.match(unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers })).message, /more than one signature header/);
  // The genuine object still verifies (the payload is taken apart as git does).
  forge(raw);
  assert.is(loadPolicySnapshot(repo.dir, { requireSigned: signers }).commit, repo.head);
});

test('requireSigned: a retired key (valid-before) cannot sign by dating its commit in the past', () => {
  const repo = makeRepo(fresh('retired'));
  repo.write('groups.policy', GROUPS);
  repo.write('binaries/hello.policy', helloV1());
  const retired = join(keys, `retired-signers-${counter}`);
  writeFileSync(retired, `tester@example.com namespaces="git",valid-before="20250101" ${trusted.pub}\n`);
  repo.git('add', '-A');
  run('git', ['-c', 'user.name=T', '-c', 'user.email=t@example.com', '-c', 'gpg.format=ssh', '-c', `user.signingkey=${trusted.key}`, 'commit', '-q', '-S', '-m', 'backdated'], {
    cwd: repo.dir,
    env: { ...process.env, GIT_COMMITTER_DATE: '2024-06-01T00:00:00Z', GIT_AUTHOR_DATE: '2024-06-01T00:00:00Z' },
  });
  const err = unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: retired }));
  assert.is(err.reason, 'bad');
});

test('requireSigned refuses a work tree whose policy files differ from the signed commit', () => {
  const repo = signedRepo();
  writeFileSync(join(repo.dir, 'binaries/hello.policy'), `${helloV1()}version 1.1 approved ${m(7)}\n`);
  writeFileSync(join(repo.dir, 'binaries/new.policy'), `binary new\nversion 1 approved ${m(8)}\n`);
  const err = unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers }));
  assert.is(err.reason, 'dirty');
  assert.is(err.commit, repo.head);
  const short = repo.head.slice(0, 12);
  assert.equal(err.errors.map((e) => e.message), [`binaries/hello.policy: has uncommitted changes (differs from commit ${short})`, `binaries/new.policy: is not in commit ${short} (uncommitted)`]);
  // Deleting a committed policy file is a difference too.
  repo.git('checkout', '-q', '--', '.');
  repo.git('clean', '-q', '-f');
  repo.git('rm', '-q', 'groups.policy');
  assert.equal(unverified(() => loadPolicySnapshot(repo.dir, { requireSigned: signers })).errors.map((e) => e.message), [`groups.policy: is in commit ${short} but missing from the work tree`]);
});

test('requireSigned needs a readable allowed-signers file and a git repository', () => {
  const repo = signedRepo();
  assert.throws(() => loadPolicySnapshot(repo.dir, { requireSigned: join(keys, 'nope') }), /cannot read the allowed-signers file .*nope: no such file/);
  const plain = fresh('plain-signed');
  mkdirSync(plain);
  assert.throws(() => loadPolicySnapshot(plain, { requireSigned: signers }), /is not a git work tree: a signed commit is required/);
});

test('headCommit (one git call): outside git, before the first commit, in the top level and in a sub-folder', () => {
  const plain = fresh('no-git');
  mkdirSync(plain, { recursive: true });
  assert.is(headCommit(plain), undefined);
  const repo = makeRepo(fresh('head'));
  assert.is(headCommit(repo.dir), undefined, 'unborn HEAD');
  repo.write('sub/x.policy', '# nothing\n');
  repo.commit('first');
  const id = repo.git('rev-parse', 'HEAD').toString().trim();
  assert.match(id, /^[0-9a-f]{40}$/);
  assert.is(headCommit(repo.dir), id);
  assert.is(headCommit(join(repo.dir, 'sub')), id);
  // Inside .git is not a work tree.
  assert.is(headCommit(join(repo.dir, '.git')), undefined);
});

test.run();
