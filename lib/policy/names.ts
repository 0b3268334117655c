// The shapes of every name a policy file may contain. Names are checked with anchored
// regular expressions of bounded length, so a value is either exactly right or refused.
import { MEASUREMENT_PATTERN } from '../measure/pure.js';

export const BINARY_NAME = /^[a-z0-9][a-z0-9._+-]{0,63}$/;
export const GROUP_NAME = BINARY_NAME;
/** libvirt domain names are case-sensitive; we accept the conservative subset below. */
export const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
export const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
export const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$/;

/** A measurement as written in a policy: `<algo>:<64 lowercase hex>`, the measurement core's own pattern. */
export const MEASUREMENT = MEASUREMENT_PATTERN;

export function isMeasurement(text: string): boolean {
  return MEASUREMENT.test(text);
}

/** Why `text` is not a measurement, in words (for error messages). */
export function measurementProblem(text: string): string {
  if (MEASUREMENT.test(text.toLowerCase())) return `measurement '${text}' must be written in lowercase hex`;
  const colon = text.indexOf(':');
  const algo = colon < 0 ? '' : text.slice(0, colon);
  if (algo !== 'sha256' && algo !== 'blake3') return `'${text}' is not a measurement (expected sha256:<64 hex digits> or blake3:<64 hex digits>)`;
  return `measurement '${text}' must have exactly 64 lowercase hex digits after '${algo}:'`;
}

/** Whom a `group` or `vms` line names: a libvirt domain by name, a VM by UUID, or a group. */
export type Member =
  | { readonly kind: 'vm'; readonly value: string }
  | { readonly kind: 'uuid'; readonly value: string }
  | { readonly kind: 'group'; readonly value: string };

export function formatMember(member: Member): string {
  return `${member.kind}:${member.value}`;
}

/** Parse `vm:NAME`, `uuid:UUID` (normalized to lowercase) or `group:NAME`. */
export function parseMember(text: string): { member: Member } | { problem: string } {
  const colon = text.indexOf(':');
  const kind = colon < 0 ? '' : text.slice(0, colon);
  const value = text.slice(colon + 1);
  switch (kind) {
    // Each kind as the literal, not the slice of `text`: members are kept in snapshots.
    case 'vm':
      return DOMAIN_NAME.test(value) ? { member: { kind: 'vm', value } } : { problem: `bad domain name in '${text}' (expected ${DOMAIN_NAME.source})` };
    case 'uuid':
      return UUID.test(value) ? { member: { kind: 'uuid', value: value.toLowerCase() } } : { problem: `bad UUID in '${text}' (expected 8-4-4-4-12 hex digits)` };
    case 'group':
      return GROUP_NAME.test(value) ? { member: { kind: 'group', value } } : { problem: `bad group name in '${text}' (expected ${GROUP_NAME.source})` };
    default:
      return { problem: `'${text}' does not name a VM (expected vm:<domain name>, uuid:<uuid> or group:<name>)` };
  }
}

/** `interpreter` value: none (run directly), wasi (a WebAssembly module), or an absolute path. */
export type Interpreter = { readonly kind: 'none' } | { readonly kind: 'wasi' } | { readonly kind: 'path'; readonly path: string };

export const MAX_INTERPRETER_PATH = 4096;

export function formatInterpreter(interpreter: Interpreter): string {
  return interpreter.kind === 'path' ? interpreter.path : interpreter.kind;
}

/** Why `path` is not an acceptable interpreter path, or undefined when it is. */
export function interpreterPathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return `interpreter '${path}' must be an absolute path, 'wasi' or 'none'`;
  if (path.length > MAX_INTERPRETER_PATH) return `interpreter path is longer than ${MAX_INTERPRETER_PATH} characters`;
  if (path.length > 1 && path.endsWith('/')) return `interpreter '${path}' ends in '/' (a directory)`;
  // One spelling per file: no empty, '.' or '..' components that make two paths mean the same.
  const parts = path.split('/').slice(1);
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return `interpreter '${path}' has an empty, '.' or '..' component`;
  return undefined;
}
