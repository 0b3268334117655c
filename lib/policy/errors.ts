// Errors of the policy core. Every one carries the file and line it was found at, so
// `policy check` can print `file:line: what is wrong` and `--json` can emit the facts.
import { VirtOffloadError } from '../errors.js';

/**
 * One problem in one policy file. `line` is 1-based; 0 means the file as a whole (too large,
 * listed twice). `detail` is the message without its `file:line: ` prefix.
 */
export class PolicySyntaxError extends VirtOffloadError {
  readonly file: string;
  readonly line: number;
  readonly detail: string;

  constructor(file: string, line: number, detail: string) {
    super('EMALFORMED', line > 0 ? `${file}:${line}: ${detail}` : `${file}: ${detail}`);
    this.file = file;
    this.line = line;
    this.detail = detail;
  }
}

/**
 * A policy that cannot be used: a repository that does not build into a snapshot, or an edit
 * that would leave a file invalid. `errors` lists every problem found, sorted by file and line.
 */
export class PolicyError extends VirtOffloadError {
  readonly errors: readonly PolicySyntaxError[];
  /** The message without the list of errors ("the policy has 2 errors"): for a line printed after that list. */
  readonly summary: string;

  constructor(message: string, errors: readonly PolicySyntaxError[] = []) {
    super('EMALFORMED', errors.length === 0 ? message : `${message}:\n${errors.map((e) => `  ${e.message}`).join('\n')}`);
    this.errors = Object.freeze([...errors]);
    this.summary = message;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), errors: this.errors.map((e) => e.toJSON()) };
  }
}

/** Sort errors the way `policy check` prints them: by file, then line, then text. */
export function sortErrors(errors: readonly PolicySyntaxError[]): PolicySyntaxError[] {
  return [...errors].sort((a, b) => compareStrings(a.file, b.file) || a.line - b.line || compareStrings(a.detail, b.detail));
}

/** Code-point order, independent of the host's locale (so output is the same everywhere). */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
