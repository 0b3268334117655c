// Public face of the policy core (pure: no I/O). Other modules import only from here.
export type { BinaryDecl, GroupDecl, PolicyFileAst, StatusSpec, VersionDecl, VersionStatus, VmsDecl } from './ast.js';
export { VERSION_STATUSES } from './ast.js';
export { decide, inScope } from './decide.js';
export type { Decision, DenyCode, VmIdentity } from './decide.js';
export { diffSnapshots } from './diff.js';
export type { ChangeKind, PolicyChange } from './diff.js';
export {
  appendVersionLine,
  formatInterpreterLine,
  formatVersionLine,
  formatVmsLine,
  renderBinaryFile,
  setInterpreterLine,
  setLimitsLine,
  setVersionStatus,
  setVmsLine,
} from './edit.js';
export type { BinaryFileSpec, EditOptions, VersionSpec, VmsSpec } from './edit.js';
export { compareStrings, PolicyError, PolicySyntaxError, sortErrors } from './errors.js';
export { FrozenMap, FrozenSet } from './frozen.js';
export { DEFAULT_LIMITS, formatLimitValue, LIMIT_KEY_ORDER, limitValue, parseLimitValue, parseSize, resolveLimits } from './limits.js';
export type { LimitKey, Limits } from './limits.js';
export { DOMAIN_NAME, formatInterpreter, formatMember, isMeasurement, parseMember, UUID } from './names.js';
export type { Interpreter, Member } from './names.js';
export { KEYWORDS, PARSE_LIMITS, parsePolicyFile } from './parse.js';
export type { ParsedPolicyFile } from './parse.js';
export { IncrementalSnapshots } from './incremental.js';
export type { IncrementalStats } from './incremental.js';
export { MAX_SCOPE_MEMBERSHIPS } from './scope.js';
export { buildSnapshot, buildSnapshotOrThrow, tryBuildSnapshot } from './snapshot.js';
export type { SnapshotResult } from './snapshot.js';
export type { BinaryPolicy, GroupPolicy, PolicyEntry, PolicySnapshot, PolicySource, SnapshotMeta, VmScope } from './types.js';
