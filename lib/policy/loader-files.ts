// What the loader reads, wherever it reads from (a work tree or a git revision): which paths
// count as policy files, how big they may be, and how their bytes become text. One set of
// rules for both, so the files of a commit and of its checkout load the same way.
import { PolicySyntaxError } from './errors.js';
import type { PolicySource } from './types.js';

export const LOADER_LIMITS = Object.freeze({
  /** Bytes in one policy file (the parser's bound is 16 Mi characters; a byte is at most one). */
  maxFileBytes: 16 * 1024 * 1024,
  /** Bytes of all policy files together: the whole repository is held in memory. */
  maxTotalBytes: 512 * 1024 * 1024,
  /** Policy files in one repository. */
  maxFiles: 1_000_000,
  /** Directory entries (of any kind) looked at in a work tree or listed at a revision. */
  maxEntries: 4_000_000,
  /** Directory nesting below the repository root. */
  maxDepth: 64,
  /** Symbolic links followed in a row (at a revision, where git does not resolve them). */
  maxLinkHops: 8,
});

/** The result of reading a repository's policy files: every readable file, and a problem per other one. */
export interface PolicyFileSet {
  /** Sorted by path (code-point order). */
  readonly files: PolicySource[];
  readonly errors: PolicySyntaxError[];
}

/** Policy files are named `*.policy`; anything below a hidden name (`.git`, `.github`, `.x.policy`) is skipped. */
export function isPolicyPath(path: string): boolean {
  return path.endsWith('.policy') && !hasHiddenComponent(path);
}

export function hasHiddenComponent(path: string): boolean {
  return path.split('/').some((c) => c.startsWith('.'));
}

/**
 * A problem with a policy file's name itself: control or invisible characters would let a
 * name forge or hide lines of `file:line: message` output; U+FFFD stands for bytes that are
 * not UTF-8, so the name shown would not be the file's. Undefined when the name is fine.
 */
export function pathProblem(path: string): PolicySyntaxError | undefined {
  // eslint-disable-next-line no-control-regex
  if (!/[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff\ufffd]/.test(path)) return undefined;
  return new PolicySyntaxError(JSON.stringify(path), 0, 'file name holds control or invisible characters; rename it');
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Bytes → text, or an error naming the file. Invalid UTF-8 is refused, not replaced; a BOM is
 * kept (ignoreBOM) so the parser sees it and refuses it like any other invisible character.
 */
export function decodePolicyFile(path: string, bytes: Uint8Array): { text: string } | { error: PolicySyntaxError } {
  try {
    return { text: decoder.decode(bytes) };
  } catch {
    return { error: new PolicySyntaxError(path, 0, 'is not valid UTF-8 text') };
  }
}

export function tooLarge(path: string, size: number): PolicySyntaxError {
  return new PolicySyntaxError(path, 0, `is ${size} bytes, more than the ${LOADER_LIMITS.maxFileBytes} a policy file may have`);
}

/** Tracks the repository-wide bounds while files are collected. */
export class TotalBudget {
  private bytes = 0;
  private files = 0;

  /** Count one file; a problem message when a bound is passed. */
  add(size: number): string | undefined {
    this.bytes += size;
    this.files += 1;
    if (this.files > LOADER_LIMITS.maxFiles) return `more than ${LOADER_LIMITS.maxFiles} policy files`;
    if (this.bytes > LOADER_LIMITS.maxTotalBytes) return `policy files of more than ${LOADER_LIMITS.maxTotalBytes} bytes in total`;
    return undefined;
  }
}

/** Posix path normalization of `target` relative to the directory of `from`; undefined if it climbs above the root. */
export function resolveRelative(from: string, target: string): string | undefined {
  if (target.startsWith('/')) return undefined;
  const parts = from.split('/').slice(0, -1);
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(c);
  }
  return parts.join('/');
}
