// The last signed policy commit this host accepted (--require-signed), kept in the store's
// directory across restarts. A signature proves who wrote a commit, not that it is the latest:
// whoever controls the repository's refs (a compromised mirror) could check out an older signed
// commit, and with it every version a later commit revoked would be approved again and
// reinstalled. A new commit is accepted only if it descends from the last one accepted.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VirtOffloadError } from '../errors.js';
import { descendsFrom } from '../git/index.js';
import { createAtomicFile } from '../io/index.js';
import type { Store } from '../store/index.js';

const COMMIT = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

export function acceptedCommitPath(store: Store): string {
  return join(store.root, 'accepted-policy-commit');
}

/** The commit recorded at `path`, or undefined when none is (a first signed start). */
export function readAcceptedCommit(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VirtOffloadError('EIO', `cannot read ${path}, the last signed policy commit this host accepted: ${(err as Error).message}`, { cause: err });
  }
  const commit = text.trim();
  if (!COMMIT.test(commit)) throw new VirtOffloadError('EIO', `${path} does not hold a commit id (the last signed policy commit this host accepted); fix or remove it`);
  return commit;
}

export function writeAcceptedCommit(path: string, commit: string): void {
  // A random temp name: one a crash left behind (same pid after a restart) never blocks this.
  const file = createAtomicFile(path, { mode: 0o644, tempPath: `${path}.tmp-${randomBytes(8).toString('hex')}`, what: 'the accepted policy commit' });
  try {
    file.write(Buffer.from(`${commit}\n`));
    file.commit();
  } finally {
    file.abort();
  }
}

/** Why `next` may not replace `accepted` (it does not descend from it), or undefined. */
export function rollbackProblem(repo: string, accepted: string, next: string, path: string): string | undefined {
  if (accepted === next) return undefined;
  const descends = descendsFrom(repo, accepted, next);
  if (descends === true) return undefined;
  const why = descends === false ? `does not descend from ${accepted}` : `cannot be shown to descend from ${accepted} (git does not have that commit: rewritten history, or another clone)`;
  return `signed commit ${next} ${why}, the last signed policy commit this host accepted: an older or rewritten history would approve again what later commits revoked; refusing it. If this is intended, remove ${path} and reload`;
}
