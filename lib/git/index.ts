// Running git (support layer): no shell, bounded output. Used by the policy loader and the CLI.
export { checkRevision, GitError, gitOrThrow, headCommitOf, isAncestor, listTree, readBlobs, resolveCommit, runGit, treeExists, verifyCommit, workTreeOf } from './git.js';
export type { GitOptions, GitResult, SignatureCheck, TreeEntry } from './git.js';
