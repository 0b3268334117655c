// The one root of every error virt-offload throws on purpose. Each error carries the
// facts needed to act on it (which file, which offset, which value) as fields, so the CLI
// can print them and `--json` can emit them, and a stable `code` for scripts.

export type ErrorCode =
  | 'EUSAGE' // a command line or option value is wrong
  | 'EMALFORMED' // a binary cannot be read one way only: truncated, out of bounds, ambiguous
  | 'EUNSUPPORTED' // a well-formed binary of a kind this profile refuses (ET_REL, components…)
  | 'EIO' // the host could not read or write a file
  | 'EINTERNAL'; // a broken invariant inside virt-offload itself

export class VirtOffloadError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  /** Plain-data view for `--json` output: code, message and the subclass's facts. */
  toJSON(): Record<string, unknown> {
    const facts: Record<string, unknown> = { error: this.name, code: this.code, message: this.message };
    for (const [key, value] of Object.entries(this)) {
      if (key !== 'code' && key !== 'name' && value !== undefined && typeof value !== 'object') facts[key] = value;
    }
    return facts;
  }
}

/** Something on the command line is wrong: exit code 2. */
export class UsageError extends VirtOffloadError {
  readonly option: string | undefined;
  constructor(message: string, option?: string) {
    super('EUSAGE', message);
    this.option = option;
  }
}

export type BinaryFormat = 'elf' | 'pe' | 'wasm' | 'raw';

/**
 * A binary that cannot be measured because it is truncated, points outside itself, or could
 * be read in more than one way. `offset` is the file offset the problem was found at, when
 * there is one; `detail` names the field or structure ("segment 3", "section .text").
 */
export class MalformedBinaryError extends VirtOffloadError {
  readonly format: BinaryFormat;
  readonly offset: number | undefined;

  constructor(format: BinaryFormat, message: string, offset?: number) {
    super('EMALFORMED', message);
    this.format = format;
    this.offset = offset;
  }
}

/** A well-formed binary of a kind the measurement profile does not accept (e.g. ELF ET_REL). */
export class UnsupportedBinaryError extends VirtOffloadError {
  readonly format: BinaryFormat;

  constructor(format: BinaryFormat, message: string) {
    super('EUNSUPPORTED', message);
    this.format = format;
  }
}

/** The host failed to read or write a file; `path` and the system error code say which and why. */
export class FileAccessError extends VirtOffloadError {
  readonly path: string;
  readonly syscallCode: string | undefined;

  constructor(path: string, message: string, options?: { cause?: unknown; syscallCode?: string }) {
    super('EIO', message, options);
    this.path = path;
    this.syscallCode = options?.syscallCode;
  }
}

/** A broken invariant inside virt-offload: a bug, never the input's fault. */
export class InternalError extends VirtOffloadError {
  constructor(message: string) {
    super('EINTERNAL', message);
  }
}

/** Format a file offset the way binary tools print them. */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
