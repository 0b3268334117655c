// The policy module's I/O edge: reads a repository's *.policy files from a work tree or a
// git revision, records the commit, optionally insists on a verified signature, and builds
// the snapshot with the pure core. Not in the barrel (it would pull node: into the pure
// typecheck): bin/ and adapters import `lib/policy/loader.js` directly.
import { lstatSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FileAccessError, VirtOffloadError } from '../errors.js';
import { GitError, headCommitOf, objectId, resolveCommit, verifyCommit, workTreeOf } from '../git/index.js';
import { fileError } from '../io/index.js';
import { PolicyError, PolicySyntaxError, sortErrors } from './errors.js';
import { listPolicyTree, scanRevision, throwIfUnreadable } from './loader-revision.js';
import { realDirectory, scanWorkTree } from './loader-worktree.js';
import { isPolicyPath, type PolicyFileSet } from './loader-files.js';
import { IncrementalSnapshots, type IncrementalStats } from './incremental.js';
import { buildSnapshot, type SnapshotResult } from './snapshot.js';
import type { PolicySnapshot, PolicySource, SnapshotMeta } from './types.js';

export { LOADER_LIMITS, isPolicyPath } from './loader-files.js';
export type { PolicyFileSet } from './loader-files.js';

export interface LoadedPolicyFiles {
  /** Every policy file, path relative to the directory read, sorted. */
  readonly files: PolicySource[];
  /** HEAD's commit id when the directory is in a git work tree with at least one commit. */
  readonly commit?: string;
}

/**
 * HEAD's signature did not verify, or the work tree is not what was signed. `commit` is the
 * full id; `reason` says which: 'unsigned', 'bad' (not by an allowed signer, or broken), or
 * 'dirty' (policy files differ from the commit).
 */
export class UnverifiedCommitError extends PolicyError {
  readonly commit: string;
  readonly reason: 'unsigned' | 'bad' | 'dirty';

  constructor(commit: string, reason: 'unsigned' | 'bad' | 'dirty', message: string, errors: readonly PolicySyntaxError[] = []) {
    super(message, errors);
    this.commit = commit;
    this.reason = reason;
  }
}

/** HEAD's commit id, or undefined outside git or before the first commit. */
export function headCommit(dir: string): string | undefined {
  return headCommitOf(dir);
}

/**
 * Whether `dir`'s *.policy files may differ from HEAD's (changed, added, removed, untracked or
 * ignored): a load then recorded HEAD's commit for files nobody committed, let alone reviewed.
 * The work tree is read as the loader reads it and compared with HEAD's files read from checked
 * objects, text for text: no `git status`, which could run a filter driver the repository's
 * configuration names, and which trusts what assume-unchanged and skip-worktree say.
 * Conservative: a file that cannot be read on either side counts as a change. Undefined
 * outside git, before the first commit, or when git cannot tell.
 */
export function uncommittedPolicyChanges(dir: string): boolean | undefined {
  try {
    const head = headCommitOf(dir);
    const wt = workTreeOf(dir);
    if (head === undefined || wt === undefined) return undefined;
    const disk = scanWorkTree(dir);
    if (disk.errors.length > 0) return true;
    // HEAD's policy files by blob id, from its (checked) trees: the disk texts are hashed as git
    // would store them, so no blob is read. The texts are the files' exact bytes (strict UTF-8,
    // the BOM kept). A linked policy file is compared by reading the commit's files instead.
    const entries = listPolicyTree(dir, head, wt.prefix, { sizes: false }) ?? [];
    const policy = entries.filter((e) => isPolicyPath(e.path));
    if (policy.some((e) => e.mode !== '100644' && e.mode !== '100755')) {
      const committed = scanRevision(dir, head);
      return committed.errors.length > 0 || compareFileSets(disk.files, committed.files, head).length > 0;
    }
    if (policy.length !== disk.files.length) return true;
    const ids = new Map(policy.map((e) => [e.path, e.object]));
    return disk.files.some((f) => ids.get(f.path) !== objectId('blob', Buffer.from(f.text, 'utf8'), head.length));
  } catch {
    return undefined;
  }
}

/** The policy files of a work tree as they are on disk. Throws a PolicyError when some cannot be read. */
export function loadPolicyWorkTree(dir: string): LoadedPolicyFiles {
  const { set, commit } = scanWithStableHead(dir);
  throwIfUnreadable(`policy repository ${dir}`, set);
  return commit === undefined ? { files: set.files } : { files: set.files, commit };
}

/** The policy files of commit `rev` (paths relative to `dir`). Throws a GitError or PolicyError naming the revision. */
export function readPolicyFilesAtRevision(dir: string, rev: string): LoadedPolicyFiles & { readonly commit: string } {
  const set = scanRevision(dir, rev);
  throwIfUnreadable(`revision ${rev}`, set);
  return { files: set.files, commit: set.commit };
}

export interface LoadPolicyOptions {
  /**
   * Path of an allowed-signers file (ssh-keygen format): HEAD must carry a signature that
   * `git verify-commit` accepts with it, and the work tree's policy files must be exactly
   * HEAD's, or nothing is loaded.
   */
  readonly requireSigned?: string;
  /** Recorded in the snapshot (the core has no clock). */
  readonly loadedAt?: string;
}

/**
 * Read and build the snapshot of the work tree `dir`. Throws a PolicyError listing every
 * problem (unreadable files and policy errors together, sorted), an UnverifiedCommitError
 * under requireSigned, or a GitError / FileAccessError when git or the disk fails.
 */
export function loadPolicySnapshot(dir: string, options: LoadPolicyOptions = {}): PolicySnapshot {
  return loadWith(buildSnapshot, dir, options);
}

type Build = (files: readonly PolicySource[], meta: SnapshotMeta) => SnapshotResult;

function loadWith(build: Build, dir: string, options: LoadPolicyOptions): PolicySnapshot {
  if (options.requireSigned !== undefined) {
    const signed = loadSigned(dir, options.requireSigned);
    return buildOrThrow(build, signed.files, signed.errors, signed.commit, options.loadedAt);
  }
  const { set, commit } = scanWithStableHead(dir);
  return buildOrThrow(build, set.files, set.errors, commit, options.loadedAt);
}

/**
 * Loads one repository again and again (a daemon reloading on every new HEAD): each load is
 * loadPolicySnapshot's, same checks, same snapshot or same errors, but a file whose text (or
 * git blob id, under requireSigned) did not change since the last load is not parsed again.
 * A load still reads every file; what it saves is proportional to what did not change.
 */
export class PolicyReloader {
  private readonly snapshots = new IncrementalSnapshots();

  constructor(readonly dir: string) {}

  load(options: LoadPolicyOptions = {}): PolicySnapshot {
    return loadWith((files, meta) => this.snapshots.build(files, meta), this.dir, options);
  }

  loadAtRevision(rev: string, options: { loadedAt?: string } = {}): PolicySnapshot {
    const set = scanRevision(this.dir, rev);
    return buildOrThrow((files, meta) => this.snapshots.build(files, meta), set.files, set.errors, set.commit, options.loadedAt, `revision ${rev}`);
  }

  /** Files parsed by the last load, and files reused. */
  get stats(): IncrementalStats {
    return this.snapshots.stats;
  }
}

/**
 * Scan the work tree and read HEAD so that the commit recorded is the one checked out while
 * the files were read: HEAD is read before and after, and the scan repeated if it moved (a
 * pull or checkout in the middle of a daemon's reload).
 */
function scanWithStableHead(dir: string): { set: PolicyFileSet; commit: string | undefined } {
  realDirectory(dir); // a missing DIR is reported as such, before git runs in it
  for (let attempt = 1; ; attempt++) {
    const before = headCommit(dir);
    const set = scanWorkTree(dir);
    const after = headCommit(dir);
    if (before === after) return { set, commit: after };
    if (attempt === 3) throw new GitError(dir, ['rev-parse', 'HEAD'], `HEAD of ${dir} kept moving while the policy files were read; try again`);
  }
}

/** The snapshot of commit `rev`; throws a PolicyError whose message names `rev`. */
export function loadPolicySnapshotAtRevision(dir: string, rev: string, options: { loadedAt?: string } = {}): PolicySnapshot {
  const set = scanRevision(dir, rev);
  return buildOrThrow(buildSnapshot, set.files, set.errors, set.commit, options.loadedAt, `revision ${rev}`);
}

function buildOrThrow(build: Build, files: readonly PolicySource[], readErrors: readonly PolicySyntaxError[], commit: string | undefined, loadedAt: string | undefined, label?: string): PolicySnapshot {
  const meta = { ...(commit === undefined ? {} : { commit }), ...(loadedAt === undefined ? {} : { loadedAt }) };
  const result = build(files, meta);
  const errors = sortErrors([...readErrors, ...(result.ok ? [] : result.errors)]);
  if (errors.length === 0 && result.ok) return result.snapshot;
  const n = errors.length;
  throw new PolicyError(`${label === undefined ? 'the policy' : label} has ${n} error${n === 1 ? '' : 's'}`, errors);
}

function loadSigned(dir: string, allowedSignersPath: string): { files: PolicySource[]; errors: PolicySyntaxError[]; commit: string } {
  const signers = resolve(allowedSignersPath);
  try {
    if (!statSync(signers).isFile()) throw new FileAccessError(allowedSignersPath, `allowed-signers file ${allowedSignersPath} is not a regular file`);
  } catch (err) {
    if (err instanceof VirtOffloadError) throw err;
    throw fileError(allowedSignersPath, 'cannot read the allowed-signers file', err);
  }
  const wt = workTreeOf(dir);
  if (wt === undefined) throw new GitError(dir, ['rev-parse'], `${dir} is not a git work tree: a signed commit is required (--require-signed)`);
  // Which folder of the signed commit is read follows from where DIR is in the repository. git
  // says so from its configuration (core.worktree, a .git file), which whoever writes .git can
  // change to load another folder of the same signed commit: the layout is found here instead.
  const top = plainTopLevel(dir);
  if (top === undefined || top !== realpathSync(wt.topLevel)) {
    throw new GitError(dir, ['rev-parse', '--show-toplevel'], `${dir} is not inside a plain git repository (a .git directory above it that git agrees is its top level; core.worktree and .git files are not supported with --require-signed)`);
  }
  const commit = resolveCommit(dir, 'HEAD');
  if (commit === undefined) throw new GitError(dir, ['rev-parse', 'HEAD'], `${dir} has no commit yet: a signed commit is required (--require-signed)`);
  const check = verifyCommit(dir, commit, signers);
  if (!check.ok) {
    const detail = check.message === '' ? '' : ` (git: ${check.message.split('\n').join('; ')})`;
    const what = check.reason === 'unsigned' ? 'is not signed' : `has a signature that does not verify against the allowed signers in ${allowedSignersPath}`;
    throw new UnverifiedCommitError(commit, check.reason, `commit ${commit} ${what}${detail}; refusing to load it`);
  }
  // What is signed must be what is loaded: the work tree's policy files must equal HEAD's.
  const disk = scanWorkTree(dir);
  const signed = scanRevision(dir, commit);
  const differences = compareFileSets(disk.files, signed.files, commit);
  if (differences.length > 0) {
    throw new UnverifiedCommitError(commit, 'dirty', `the work tree's policy files differ from signed commit ${commit}; commit them (signed) or discard the changes`, differences);
  }
  return { files: signed.files, errors: signed.errors, commit };
}

/** The nearest directory at or above `dir` that holds a `.git` directory (not a file), real path. */
function plainTopLevel(dir: string): string | undefined {
  let at = realpathSync(dir);
  for (;;) {
    try {
      if (lstatSync(join(at, '.git')).isDirectory()) return at;
      return undefined; // a .git file, link or other: not a plain repository
    } catch {
      // no .git here
    }
    const up = dirname(at);
    if (up === at) return undefined;
    at = up;
  }
}

/** One error per path whose text differs between the work tree and `commit`. */
export function compareFileSets(disk: readonly PolicySource[], committed: readonly PolicySource[], commit: string): PolicySyntaxError[] {
  const inCommit = new Map(committed.map((f) => [f.path, f.text]));
  const short = commit.slice(0, 12);
  const errors: PolicySyntaxError[] = [];
  for (const f of disk) {
    const text = inCommit.get(f.path);
    if (text === undefined) errors.push(new PolicySyntaxError(f.path, 0, `is not in commit ${short} (uncommitted)`));
    else if (text !== f.text) errors.push(new PolicySyntaxError(f.path, 0, `has uncommitted changes (differs from commit ${short})`));
    inCommit.delete(f.path);
  }
  for (const path of inCommit.keys()) errors.push(new PolicySyntaxError(path, 0, `is in commit ${short} but missing from the work tree`));
  return sortErrors(errors);
}

/** Whether the work tree's policy files are exactly those of HEAD (false outside git or before a commit). */
export function workTreeMatchesHead(dir: string): boolean {
  const commit = headCommit(dir);
  if (commit === undefined) return false;
  const disk = scanWorkTree(dir);
  const head = scanRevision(dir, commit);
  return disk.errors.length === 0 && head.errors.length === 0 && compareFileSets(disk.files, head.files, commit).length === 0;
}
