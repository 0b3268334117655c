// Reading git objects whose content is checked against their id.
//
// `git cat-file`, `ls-tree` and `merge-base` trust the object store: a loose object whose
// content was replaced is read as if it were the original (only `git fsck` notices). Whoever
// can write `.git/objects` could then change what a correctly signed commit approves, or give
// a commit other parents. Every object read here is hashed (`<type> <size>\0<content>`, SHA-1
// or SHA-256 by the id's length) and compared with its id; trees are read and parsed by us,
// from a commit whose own hash was checked, so a listing is exactly what the commit names.
import { createHash } from 'node:crypto';
import { AlteredObjectError, GitError, gitOrThrow, runGit } from './run.js';

export interface GitObject {
  readonly type: string;
  readonly content: Buffer;
}

const OBJECT_ID = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

/** The id git gives `content` as an object of `type`, in the object format of ids `hexLength` long. */
export function objectId(type: string, content: Uint8Array, hexLength: number): string {
  const hash = createHash(hexLength === 64 ? 'sha256' : 'sha1');
  hash.update(`${type} ${content.length}\0`);
  hash.update(content);
  return hash.digest('hex');
}

/** Whether `content` is what object `id` of `type` must hold. */
export function objectMatches(id: string, type: string, content: Uint8Array): boolean {
  return objectId(type, content, id.length) === id;
}

/**
 * Objects by id, read with one `git cat-file --batch`, each checked against its id. Each must be
 * at most `maxBytes` (from git's size header, before its bytes are used) and, when `type` is
 * given, of that type.
 */
export function readObjects(dir: string, ids: readonly string[], maxBytes: number, maxTotal: number, type?: string): Map<string, GitObject> {
  const result = new Map<string, GitObject>();
  const unique = [...new Set(ids)];
  if (unique.length === 0) return result;
  for (const o of unique) {
    if (!OBJECT_ID.test(o)) throw new GitError(dir, ['cat-file', o], `'${o}' is not an object id`);
  }
  // Headroom for the headers; the total is bounded by the caller's limit.
  const out = gitOrThrow(dir, ['cat-file', '--batch'], { input: `${unique.join('\n')}\n`, maxOutput: maxTotal + unique.length * 100 + 1024 });
  let pos = 0;
  for (const o of unique) {
    const nl = out.indexOf(10, pos);
    if (nl < 0) throw new GitError(dir, ['cat-file', '--batch'], `git cat-file stopped before object ${o}`);
    const header = out.subarray(pos, nl).toString('utf8');
    const m = /^([0-9a-f]{40,64}) (\w+) (\d{1,15})$/.exec(header);
    if (m === null || m[1] !== o) throw new GitError(dir, ['cat-file', '--batch'], `git cat-file: unexpected answer for ${o}: ${header.slice(0, 200)}`);
    if (type !== undefined && m[2] !== type) throw new GitError(dir, ['cat-file', '--batch'], `object ${o} is a ${m[2]}, not a ${type === 'blob' ? 'file' : type}`);
    const size = Number(m[3]);
    if (size > maxBytes) throw new GitError(dir, ['cat-file', '--batch'], `object ${o} is ${size} bytes, more than ${maxBytes}`);
    const bodyStart = nl + 1;
    if (bodyStart + size + 1 > out.length || out[bodyStart + size] !== 10) throw new GitError(dir, ['cat-file', '--batch'], `git cat-file: object ${o} is cut short`);
    const content = out.subarray(bodyStart, bodyStart + size);
    if (!objectMatches(o, m[2]!, content)) {
      throw new AlteredObjectError(dir, ['cat-file', '--batch'], `object ${o} in ${dir} does not hold what its id says (the object store was altered, or is damaged: see git fsck); refusing to use it`);
    }
    result.set(o, { type: m[2]!, content });
    pos = bodyStart + size + 1;
  }
  return result;
}

/** The contents of blobs, by id, checked against their ids (readObjects). */
export function readBlobs(dir: string, ids: readonly string[], maxBytes: number, maxTotal: number): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [id, o] of readObjects(dir, ids, maxBytes, maxTotal, 'blob')) out.set(id, o.content);
  return out;
}

/** A commit object's tree and parents, from its checked content. */
export function readCommit(dir: string, id: string): { tree: string; parents: string[]; raw: Buffer } {
  const raw = readObjects(dir, [id], 16 * 1024 * 1024, 16 * 1024 * 1024, 'commit').get(id)!.content;
  return { ...commitLinks(dir, id, raw), raw };
}

function commitLinks(dir: string, id: string, raw: Buffer): { tree: string; parents: string[] } {
  const text = raw.toString('latin1');
  const headers = text.slice(0, text.indexOf('\n\n') < 0 ? text.length : text.indexOf('\n\n')).split('\n');
  const tree = /^tree ([0-9a-f]{40,64})$/.exec(headers[0] ?? '')?.[1];
  if (tree === undefined) throw new GitError(dir, ['cat-file', 'commit', id], `commit ${id} does not begin with its tree`);
  const parents: string[] = [];
  for (const line of headers.slice(1)) {
    const p = /^parent ([0-9a-f]{40,64})$/.exec(line);
    if (p === null) break;
    parents.push(p[1]!);
  }
  return { tree, parents };
}

export interface TreeEntry {
  /** Path below the listed tree, with '/'. */
  readonly path: string;
  /** Octal mode as git prints it: 100644, 100755, 120000 (symlink), 160000 (submodule), 040000 (tree). */
  readonly mode: string;
  readonly type: string;
  readonly object: string;
  /** Size in bytes of a blob; undefined for other objects. */
  readonly size: number | undefined;
}

/** Trees nested deeper than this are refused (unless the caller asks for less). */
const MAX_TREE_DEPTH = 256;
/** Bytes of paths a listing may hold (ls-tree's output was bounded at 64 MiB). */
const MAX_PATH_BYTES = 64 * 1024 * 1024;

export interface ListTreeOptions {
  /** Levels of folders walked at most (the root's entries are level 0). */
  readonly maxDepth?: number;
  /** Folders not walked at all, by name. */
  readonly skipDirectory?: (name: string) => boolean;
  /** Blob sizes are looked up (one more git call) unless this is false. */
  readonly sizes?: boolean;
}
/** Largest single tree object read. */
const MAX_TREE_BYTES = 64 * 1024 * 1024;

/**
 * Every blob, link and submodule entry below `prefix` (a folder, '' for the root) of `commit`,
 * recursively, like `git ls-tree -r -l --full-tree`, but read from checked objects: the commit,
 * then each tree level in one cat-file call. Blob sizes come from one `cat-file
 * --batch-check` (a bound only: the blobs themselves are checked when they are read).
 * Undefined when `prefix` does not exist at that commit.
 */
export function listTree(dir: string, commit: string, prefix: string, maxEntries: number, options: ListTreeOptions = {}): TreeEntry[] | undefined {
  const maxDepth = options.maxDepth ?? MAX_TREE_DEPTH;
  let pathBytes = 0;
  let root = readCommit(dir, commit).tree;
  for (const part of prefix.split('/').filter((p) => p !== '')) {
    const entries = parseTree(dir, root, readObjects(dir, [root], MAX_TREE_BYTES, MAX_TREE_BYTES, 'tree').get(root)!.content);
    const next = entries.find((e) => e.name === part && e.type === 'tree');
    if (next === undefined) return undefined;
    root = next.object;
  }
  const out: Array<Omit<TreeEntry, 'size'>> = [];
  let level: Array<{ id: string; path: string }> = [{ id: root, path: '' }];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > maxDepth) throw new GitError(dir, ['ls-tree', commit], `trees of ${commit} nest more than ${maxDepth} levels deep; refusing to read them`);
    const trees = readObjects(dir, level.map((t) => t.id), MAX_TREE_BYTES, MAX_TREE_BYTES * 4, 'tree');
    const next: Array<{ id: string; path: string }> = [];
    for (const t of level) {
      for (const e of parseTree(dir, t.id, trees.get(t.id)!.content)) {
        // Folders the caller never reads (hidden ones, for the policy loader) are not walked:
        // a tree can name one subtree many times, and each listing costs its paths again.
        if (e.type === 'tree' && options.skipDirectory?.(e.name) === true) continue;
        const path = t.path === '' ? e.name : `${t.path}/${e.name}`;
        pathBytes += path.length;
        if (out.length + next.length >= maxEntries || pathBytes > MAX_PATH_BYTES) {
          throw new GitError(dir, ['ls-tree', commit], `${commit} has more than ${out.length + next.length >= maxEntries ? `${maxEntries} entries` : `${MAX_PATH_BYTES} bytes of paths`}; refusing to read it`);
        }
        if (e.type === 'tree') next.push({ id: e.object, path });
        else out.push({ path, mode: e.mode, type: e.type, object: e.object });
      }
    }
    level = next;
  }
  const blobs = options.sizes === false ? [] : out.filter((e) => e.type === 'blob').map((e) => e.object);
  const sizes = blobSizes(dir, blobs);
  return out.map((e) => ({ ...e, size: e.type === 'blob' ? sizes.get(e.object) : undefined })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Entries of one tree object: `<mode> <name>\0<id bytes>` repeated. */
function parseTree(dir: string, id: string, content: Buffer): Array<{ name: string; mode: string; type: string; object: string }> {
  const idBytes = id.length === 64 ? 32 : 20;
  const entries: Array<{ name: string; mode: string; type: string; object: string }> = [];
  const names = new Set<string>();
  let pos = 0;
  while (pos < content.length) {
    const space = content.indexOf(0x20, pos);
    const nul = content.indexOf(0, space + 1);
    if (space < 0 || nul < 0 || nul + 1 + idBytes > content.length) throw new GitError(dir, ['cat-file', 'tree', id], `tree ${id} is malformed at byte ${pos}`);
    const rawMode = content.subarray(pos, space).toString('latin1');
    if (!/^[0-7]{1,7}$/.test(rawMode)) throw new GitError(dir, ['cat-file', 'tree', id], `tree ${id} has a bad mode '${rawMode}'`);
    const { mode, type } = canonicalMode(parseInt(rawMode, 8));
    const name = content.subarray(space + 1, nul).toString('utf8');
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\uFFFD')) {
      throw new GitError(dir, ['cat-file', 'tree', id], `tree ${id} has an entry named ${JSON.stringify(name)}`);
    }
    // One name once (git fsck: duplicateEntries): two folders of one name would be read as both.
    if (names.has(name)) throw new GitError(dir, ['cat-file', 'tree', id], `tree ${id} names ${JSON.stringify(name)} twice`);
    names.add(name);
    const object = content.subarray(nul + 1, nul + 1 + idBytes).toString('hex');
    entries.push({ name, mode, type, object });
    pos = nul + 1 + idBytes;
  }
  return entries;
}

/** A tree entry's mode as git reads it (canon_mode): 100664 is a plain file, as ls-tree prints it. */
function canonicalMode(raw: number): { mode: string; type: string } {
  const kind = raw & 0o170000;
  if (kind === 0o100000) return { mode: raw & 0o100 ? '100755' : '100644', type: 'blob' };
  if (kind === 0o120000) return { mode: '120000', type: 'blob' };
  if (kind === 0o040000) return { mode: '040000', type: 'tree' };
  return { mode: '160000', type: 'commit' };
}

/** Blob sizes from `git cat-file --batch-check` (headers only). */
function blobSizes(dir: string, ids: readonly string[]): Map<string, number> {
  const sizes = new Map<string, number>();
  const unique = [...new Set(ids)];
  if (unique.length === 0) return sizes;
  const out = gitOrThrow(dir, ['cat-file', '--batch-check'], { input: `${unique.join('\n')}\n`, maxOutput: unique.length * 100 + 1024 }).toString('utf8');
  const lines = out.split('\n');
  unique.forEach((id, i) => {
    const m = /^([0-9a-f]{40,64}) blob (\d{1,15})$/.exec(lines[i] ?? '');
    if (m === null || m[1] !== id) throw new GitError(dir, ['cat-file', '--batch-check'], `git cat-file: unexpected answer for blob ${id}: ${(lines[i] ?? '').slice(0, 200)}`);
    sizes.set(id, Number(m[2]));
  });
  return sizes;
}

/** Commits of history read in one batch before the walk (a policy repository's commits are small). */
const PREFETCH_COMMITS = 200_000;

/**
 * Whether commit `older` is `newer` or one of its ancestors, walking parents from checked
 * commit objects (git's walker would follow grafts, a commit-graph file and altered objects).
 * Undefined when that cannot be told within `maxCommits` commits, or a commit on the way is
 * missing (a shallow clone, rewritten history).
 */
export function descendsFrom(dir: string, older: string, newer: string, maxCommits = 1_000_000): boolean | undefined {
  if (older === newer) return true;
  // git's own list of the candidates, read in one go and then checked: what it says only saves
  // calls (a graft may add or hide commits); every parent followed comes from a checked object.
  const known = new Map<string, string[]>();
  /** Read `ids` (checked) into `known`; false when git cannot give them all. An altered object throws. */
  const learn = (ids: readonly string[], maxTotal: number): boolean => {
    try {
      for (const [id, o] of readObjects(dir, ids, 16 * 1024 * 1024, maxTotal, 'commit')) known.set(id, commitLinks(dir, id, o.content).parents);
      return true;
    } catch (err) {
      if (err instanceof AlteredObjectError || !(err instanceof GitError)) throw err;
      return false;
    }
  };
  const listed = runGit(dir, ['rev-list', `--max-count=${Math.min(maxCommits, PREFETCH_COMMITS)}`, newer], { maxOutput: PREFETCH_COMMITS * 65 + 1024 });
  const candidates = listed.status === 0 ? listed.stdout.toString('utf8').split('\n').filter((l) => /^[0-9a-f]{40,64}$/.test(l)) : [];
  // When git's list cannot be read whole, the walk reads level by level.
  if (candidates.length > 0) learn(candidates, 1024 * 1024 * 1024);
  const seen = new Set<string>([newer]);
  let frontier = [newer];
  while (frontier.length > 0) {
    const unknown = frontier.filter((id) => !known.has(id));
    if (unknown.length > 0 && !learn(unknown, 256 * 1024 * 1024)) return undefined;
    const next: string[] = [];
    for (const id of frontier) {
      for (const p of known.get(id)!) {
        if (p === older) return true;
        if (seen.has(p)) continue;
        if (seen.size >= maxCommits) return undefined;
        seen.add(p);
        next.push(p);
      }
    }
    frontier = next;
  }
  return false;
}
