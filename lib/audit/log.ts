// The audit log: JSON lines, appended and flushed to disk before the caller goes on
// (principle 4: a decision or a store change is on disk before the reply or the next step).
// One record is one write(2) on an O_APPEND descriptor, so concurrent writers never interleave
// inside a line; fdatasync makes it durable. A crash can at worst leave a torn last line,
// which the reader reports and the next writer terminates before appending.
import { closeSync, constants, fdatasyncSync, fstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { VirtOffloadError } from '../errors.js';
import { fileError } from '../io/index.js';

/** Default location; `--audit-log PATH` overrides it. */
export const DEFAULT_AUDIT_LOG = '/var/log/virt-offload/audit.jsonl';
/** A record longer than this is refused (a guest-controlled field must not bloat the log). */
export const MAX_RECORD_BYTES = 64 * 1024;

/** One audit record: plain JSON data. `time` is added when it is appended. */
export type AuditRecord = Record<string, string | number | boolean | null | undefined | readonly string[]>;

export interface AuditLog {
  readonly path: string;
  /** Append one record and flush it to disk; returns the line written (without the newline). */
  append(record: AuditRecord): string;
  close(): void;
}

export interface OpenAuditLogOptions {
  /** Clock, injectable for tests. */
  now?: () => Date;
}

/** Open (creating it 0640, and its directory 0750, if needed) the audit log at `path`. */
export function openAuditLog(path: string, options: OpenAuditLogOptions = {}): AuditLog {
  const now = options.now ?? (() => new Date());
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  } catch (err) {
    throw fileError(dirname(path), 'cannot create the audit log directory', err);
  }
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o640);
  } catch (err) {
    throw fileError(path, 'cannot open the audit log', err);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new VirtOffloadError('EIO', `audit log ${path} is not a regular file`);
    terminateTornLine(path, fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  let open = true;
  return {
    path,
    append(record) {
      if (!open) throw new VirtOffloadError('EINTERNAL', `audit log ${path} is closed`);
      const line = JSON.stringify({ time: now().toISOString(), ...record });
      const bytes = Buffer.from(`${line}\n`, 'utf8');
      if (bytes.length > MAX_RECORD_BYTES) {
        throw new VirtOffloadError('EIO', `audit record of ${bytes.length} bytes is larger than ${MAX_RECORD_BYTES}: not written`);
      }
      try {
        const written = writeSync(fd, bytes);
        if (written !== bytes.length) throw new Error(`short write: ${written} of ${bytes.length} bytes (disk full?)`);
        fdatasyncSync(fd);
      } catch (err) {
        throw fileError(path, 'cannot append to the audit log', err);
      }
      return line;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

// If a crash cut the last record short, end that line so the next record stands on its own.
function terminateTornLine(path: string, fd: number): void {
  const size = fstatSync(fd).size;
  if (size === 0) return;
  const last = Buffer.alloc(1);
  const reader = openSync(path, 'r');
  try {
    readSync(reader, last, 0, 1, size - 1);
  } finally {
    closeSync(reader);
  }
  if (last[0] !== 0x0a) {
    writeSync(fd, '\n');
    fdatasyncSync(fd);
  }
}
