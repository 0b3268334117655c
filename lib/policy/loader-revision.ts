// Reads the *.policy files of a git revision (for `policy diff` and for comparing a work
// tree with its signed commit): `git ls-tree` lists them with their sizes, one
// `git cat-file --batch` reads them. Same path rules and bounds as the work-tree reader.
import { GitError, listTree, readBlobs, resolveCommit, workTreeOf, type TreeEntry } from '../git/index.js';
import { compareStrings, PolicyError, PolicySyntaxError } from './errors.js';
import { decodePolicyFile, hasHiddenComponent, isPolicyPath, LOADER_LIMITS, pathProblem, resolveRelative, TotalBudget, tooLarge, type PolicyFileSet } from './loader-files.js';
import type { PolicySource } from './types.js';

export interface RevisionFileSet extends PolicyFileSet {
  /** The full commit id the revision named. */
  readonly commit: string;
}

/**
 * The policy files of commit `rev` below `dir` (paths relative to `dir`, as in the work tree).
 * Throws a GitError when `dir` is not in a git work tree or `rev` names no commit.
 */
export function scanRevision(dir: string, rev: string): RevisionFileSet {
  const wt = workTreeOf(dir);
  if (wt === undefined) throw new GitError(dir, ['rev-parse'], `${dir} is not inside a git work tree`);
  const commit = resolveCommit(dir, rev);
  if (commit === undefined) throw new GitError(dir, ['rev-parse', rev], `'${rev}' names no commit in ${dir}`);
  // Read from checked objects (lib/git/objects.ts): the listing is exactly what the commit names.
  const entries = listPolicyTree(dir, commit, wt.prefix);
  // DIR is a folder of a larger repository that did not exist yet at this commit: no policy.
  if (entries === undefined) return { commit, files: [], errors: [] };
  const byPath = new Map(entries.map((e) => [e.path, e]));
  // Every symbolic link's target, read in one git call (a link each cost a process: 3000 links
  // made a signed load 5 s slower). A link's blob is its target path: 4096 bytes at most.
  const links = entries.filter((e) => e.mode === '120000').map((e) => e.object);
  const linkTargets = links.length === 0 ? new Map<string, Uint8Array>() : readBlobs(dir, links, 4096, Math.min(links.length * 4096, LOADER_LIMITS.maxTotalBytes));
  const errors: PolicySyntaxError[] = [];
  const wanted: { path: string; entry: TreeEntry }[] = [];
  const budget = new TotalBudget();
  for (const e of entries) {
    if (!isPolicyPath(e.path)) continue;
    const badName = pathProblem(e.path);
    if (badName !== undefined) {
      errors.push(badName);
      continue;
    }
    if (e.path.split('/').length - 1 > LOADER_LIMITS.maxDepth) {
      errors.push(new PolicySyntaxError(e.path, 0, `directory is nested more than ${LOADER_LIMITS.maxDepth} levels deep`));
      continue;
    }
    const target = e.mode === '120000' ? followLink(e, byPath, linkTargets) : e.mode === '100644' || e.mode === '100755' ? { entry: e } : { problem: 'is not a regular file' };
    if ('problem' in target) {
      errors.push(new PolicySyntaxError(e.path, 0, target.problem));
      continue;
    }
    const size = target.entry.size ?? 0;
    if (size > LOADER_LIMITS.maxFileBytes) {
      errors.push(tooLarge(e.path, size));
      continue;
    }
    const over = budget.add(size);
    if (over !== undefined) throw new GitError(dir, ['ls-tree', rev], `revision ${rev} has ${over}; refusing to read it`);
    wanted.push({ path: e.path, entry: target.entry });
  }
  const blobs = readBlobs(dir, wanted.map((w) => w.entry.object), LOADER_LIMITS.maxFileBytes, LOADER_LIMITS.maxTotalBytes);
  const files: PolicySource[] = [];
  for (const w of wanted) {
    const decoded = decodePolicyFile(w.path, blobs.get(w.entry.object)!);
    if ('error' in decoded) errors.push(decoded.error);
    else files.push({ path: w.path, text: decoded.text, id: w.entry.object });
  }
  files.sort((a, b) => compareStrings(a.path, b.path));
  return { commit, files, errors };
}

/**
 * The entries of `commit` below `prefix`, from checked objects, as the loader reads a tree:
 * hidden folders are not walked (isPolicyPath never reads them), and nothing nests deeper
 * than the loader reads. Undefined when `prefix` does not exist at that commit.
 */
export function listPolicyTree(dir: string, commit: string, prefix: string, options: { sizes?: boolean } = {}): TreeEntry[] | undefined {
  return listTree(dir, commit, prefix, LOADER_LIMITS.maxEntries, { maxDepth: LOADER_LIMITS.maxDepth + 1, skipDirectory: (name) => name.startsWith('.'), ...options });
}

/** A symbolic link stored in git: its target, resolved inside the listed tree like the work-tree reader does. */
function followLink(start: TreeEntry, byPath: ReadonlyMap<string, TreeEntry>, targets: ReadonlyMap<string, Uint8Array>): { entry: TreeEntry } | { problem: string } {
  let cur = start;
  for (let hop = 0; hop < LOADER_LIMITS.maxLinkHops; hop++) {
    const text = targets.get(cur.object)!;
    const target = resolveRelative(cur.path, new TextDecoder().decode(text));
    if (target === undefined) return { problem: 'is a symbolic link that points outside the policy repository' };
    if (hasHiddenComponent(target)) return { problem: `is a symbolic link into a hidden directory or file (${target})` };
    const next = byPath.get(target);
    if (next === undefined) return { problem: 'is a symbolic link that does not resolve' };
    if (next.mode === '100644' || next.mode === '100755') return { entry: next };
    if (next.mode !== '120000') return { problem: 'is a symbolic link to something other than a file' };
    cur = next;
  }
  return { problem: `is a symbolic link chain longer than ${LOADER_LIMITS.maxLinkHops}` };
}

/** Throw a PolicyError naming the revision when its files could not all be read. */
export function throwIfUnreadable(label: string, set: PolicyFileSet): void {
  if (set.errors.length > 0) throw new PolicyError(`${label}: ${set.errors.length} policy file${set.errors.length === 1 ? '' : 's'} cannot be read`, set.errors);
}
