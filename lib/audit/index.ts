// The audit log: appended, flushed JSON lines of every decision and store change.
export { DEFAULT_AUDIT_LOG, MAX_RECORD_BYTES, openAuditLog } from './log.js';
export type { AuditLog, AuditRecord, OpenAuditLogOptions } from './log.js';
export { filterAudit, readAuditLog } from './read.js';
export type { AuditFilter, ReadAuditResult } from './read.js';
