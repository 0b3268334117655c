// Public face of the daemon: per-VM guest channel sessions, the control socket, policy
// reload with store reconciliation, and the audit of every decision.
export { DEFAULT_BOUNDS, DEFAULT_PROTOCOL_LIMITS, startDaemon } from './daemon.js';
export type { Daemon, DaemonOptions, DaemonStatus, ReloadResult, VmStatus } from './daemon.js';
export type { ConnectionBounds, ConnectionStats } from './connection.js';
export { MAX_CONTROL_LINE } from './control.js';
export { DEFAULT_ATTACH_RETRY_DELAYS_MS } from './device.js';
export type { DeviceRouteFactory, DeviceState, DeviceStatus } from './device.js';
export { createLogger, silentLog } from './log.js';
export { MALLOC_TUNABLE, mallocHint, mallocTuned, mmapThreshold, withMallocTuning, withoutMallocTuning } from './malloc-tuning.js';
export type { DaemonLog, LogFields, LoggerOptions, LogLevel } from './log.js';
export { DAEMON_ERROR_CODES } from './pipeline.js';
