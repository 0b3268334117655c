// Running git (support layer): no shell, bounded output. Used by the policy loader and the CLI.
export { checkRevision, GitError, gitOrThrow, headCommitOf, resolveCommit, runGit, treeExists, verifyCommit, workTreeOf } from './git.js';
export type { GitOptions, GitResult, SignatureCheck } from './git.js';
export { descendsFrom, listTree, objectMatches, readBlobs, readCommit, readObjects } from './objects.js';
export type { GitObject, TreeEntry } from './objects.js';
