// `virt-offload policy diff [REV1 [REV2]]`: what a change approves, supersedes, revokes and
// re-scopes, one line per change (or a JSON array), for reviewers and PR comments.
// REV2 absent: the work tree. REV1 absent: HEAD, or HEAD~1 when the work tree's policy files
// are HEAD's (so a plain `policy diff` after committing shows the last commit's change).
import { UsageError } from '../../../lib/errors.js';
import { resolveCommit } from '../../../lib/git/index.js';
import { diffSnapshots, PolicyError, PolicySyntaxError, type PolicySnapshot } from '../../../lib/policy/index.js';
import { headCommit, loadPolicySnapshot, loadPolicySnapshotAtRevision, workTreeMatchesHead } from '../../../lib/policy/loader.js';
import { EXIT, reportFailure } from '../../exit.js';
import { printable } from './list.js';

interface Side {
  /** What the user called it: a revision name or "the work tree". */
  readonly label: string;
  /** undefined: an empty policy (before the first commit). */
  readonly snapshot: PolicySnapshot | undefined;
}

export async function runPolicyDiff(rev1: string | undefined, rev2: string | undefined, opts: Record<string, unknown>): Promise<number> {
  const repo = typeof opts.repo === 'string' ? opts.repo : '.';
  let before: Side;
  let after: Side;
  try {
    // Older side first: a misspelt REV1 is reported before the newer side's problems.
    const named = rev1 === undefined ? undefined : atRevision(repo, rev1);
    after = rev2 === undefined ? { label: 'the work tree', snapshot: loadPolicySnapshot(repo) } : atRevision(repo, rev2);
    before = named ?? defaultBase(repo, rev2 === undefined);
  } catch (err) {
    if (err instanceof PolicyError && err.errors.length > 0) {
      for (const e of err.errors) process.stderr.write(`${e.message}\n`);
      process.stderr.write(`virt-offload: ${err.summary}\n`);
      return EXIT.failed;
    }
    return reportFailure(err);
  }
  const changes = diffSnapshots(before.snapshot, after.snapshot!);
  if (opts.json === true) {
    process.stdout.write(`${JSON.stringify(changes)}\n`);
    return EXIT.ok;
  }
  const from = before.snapshot?.commit === undefined ? before.label : `${before.label} (${before.snapshot.commit.slice(0, 12)})`;
  const to = after.snapshot?.commit === undefined || rev2 === undefined ? after.label : `${after.label} (${after.snapshot.commit.slice(0, 12)})`;
  process.stderr.write(`policy diff: ${from} → ${to}: ${changes.length} change${changes.length === 1 ? '' : 's'}\n`);
  for (const c of changes) process.stdout.write(`${printable(c.description)}\n`);
  return EXIT.ok;
}

/** The snapshot of `rev`, or a PolicyError whose lines read `REV:file:line: message` (git's REV:path). */
function atRevision(repo: string, rev: string): Side {
  try {
    return { label: rev, snapshot: loadPolicySnapshotAtRevision(repo, rev) };
  } catch (err) {
    if (err instanceof PolicyError && err.errors.length > 0) {
      const n = err.errors.length;
      throw new PolicyError(`revision ${rev} does not build (${n} error${n === 1 ? '' : 's'})`, err.errors.map((e) => new PolicySyntaxError(`${rev}:${e.file}`, e.line, e.detail)));
    }
    throw err;
  }
}

function defaultBase(repo: string, againstWorkTree: boolean): Side {
  const head = headCommit(repo);
  if (head === undefined) {
    if (againstWorkTree) return { label: 'an empty policy (no commit yet)', snapshot: undefined };
    throw new UsageError(`${repo} has no commit to compare with: name REV1`);
  }
  if (againstWorkTree && workTreeMatchesHead(repo)) {
    // Nothing uncommitted: compare HEAD with its parent (or with nothing, for a root commit).
    if (resolveCommit(repo, 'HEAD~1') === undefined) return { label: 'an empty policy (HEAD is the first commit)', snapshot: undefined };
    return atRevision(repo, 'HEAD~1');
  }
  return atRevision(repo, 'HEAD');
}

