// Running git (support layer): no shell, bounded output. Used by the policy loader and the CLI.
export { checkRevision, headCommitOf, resolveCommit, verifyCommit, workTreeOf } from './git.js';
export type { SignatureCheck } from './git.js';
export { AlteredObjectError, GIT_SAFETY, GitError, gitOrThrow, runGit } from './run.js';
export type { GitOptions, GitResult } from './run.js';
export { descendsFrom, listTree, objectId, objectMatches, readBlobs, readCommit, readObjects } from './objects.js';
export type { GitObject, TreeEntry } from './objects.js';
