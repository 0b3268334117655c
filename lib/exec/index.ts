// Public face of the exec helper: run an installed binary by measurement, sandboxed, with limits.
export { bwrapArgs, probeBwrap, SANDBOX_DIR, SANDBOX_GID, SANDBOX_UID, systemBinds } from './bwrap.js';
export type { BwrapPlan, SandboxProbe, SystemBinds } from './bwrap.js';
export { detectCgroups, hostCgroups, removeShareGroup, removeStaleRuns } from './cgroup.js';
export type { CgroupLayout, CgroupVersion } from './cgroup.js';
export { ExecError } from './errors.js';
export { closeInheritedFds, inheritableFds } from './fds.js';
export type { OpenFd } from './fds.js';
export type { ExecErrorKind } from './errors.js';
export { checkRequest, decodeExit, loadInstalled, run, RUN_NICE } from './run.js';
export type { ExecConfig, LimitsHit, RunOptions, RunResult, SandboxChoice, StartInfo } from './run.js';
export { DEFAULT_MAX_BINARY_BYTES, loadVerified, verifyBytes } from './verified.js';
export type { VerifiedBinary } from './verified.js';
