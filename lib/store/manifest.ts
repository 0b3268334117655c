// The small JSON file beside each object: what it is (name, version, format) and when it came.
// Read back with the same suspicion as any file: bounded size, every field checked.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import type { BinaryFormat } from '../errors.js';
import { fileError, readOpenFile } from '../io/index.js';
import type { Measurement } from '../measure/index.js';
import { StoreError } from './errors.js';

export interface Manifest {
  readonly measurement: string;
  readonly name: string;
  readonly version: string;
  /** The binary format the canonicalizer recognised. */
  readonly format: BinaryFormat;
  /** Measurement profile of the canonical image (always v1: what the allowlist uses). */
  readonly profile: 'v1';
  /** Bytes of the object (the canonical image). */
  readonly size: number;
  /** ISO 8601. */
  readonly installedAt: string;
}

export const MAX_MANIFEST_BYTES = 64 * 1024;
const MAX_LABEL = 1024;
const FORMATS: readonly BinaryFormat[] = ['elf', 'pe', 'wasm', 'raw'];

export function renderManifest(manifest: Manifest): Uint8Array {
  const { measurement, name, version, format, profile, size, installedAt } = manifest;
  return new TextEncoder().encode(`${JSON.stringify({ measurement, name, version, format, profile, size, installedAt }, null, 2)}\n`);
}

/** A name or version as a label: non-empty, bounded, no control characters (it is printed by `store ls`). */
export function checkLabel(what: string, value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return `${what} must be a non-empty string`;
  if (value.length > MAX_LABEL) return `${what} is longer than ${MAX_LABEL} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return `${what} contains a control character`;
  return undefined;
}

/** Read and check the manifest at `path` for measurement `m`; undefined when absent. Throws StoreError('corrupt'). */
export function readManifest(path: string, m: Measurement): Manifest | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw corrupt(path, m, 'is a symbolic link');
    throw fileError(path, 'cannot open manifest', err);
  }
  let text: string;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw corrupt(path, m, 'is not a regular file');
    if (st.size > MAX_MANIFEST_BYTES) throw corrupt(path, m, `is ${st.size} bytes (limit ${MAX_MANIFEST_BYTES})`);
    text = new TextDecoder('utf-8', { fatal: true }).decode(readOpenFile(fd, st.size));
  } catch (err) {
    if (err instanceof StoreError) throw err;
    if (err instanceof TypeError) throw corrupt(path, m, 'is not UTF-8');
    throw fileError(path, 'cannot read manifest', err);
  } finally {
    closeSync(fd);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw corrupt(path, m, 'is not JSON');
  }
  const problem = manifestProblem(data, `${m.algo}:${m.hex}`);
  if (problem !== undefined) throw corrupt(path, m, problem);
  const { name, version, format, profile, size, installedAt } = data as Manifest;
  return Object.freeze({ measurement: `${m.algo}:${m.hex}`, name, version, format, profile, size, installedAt });
}

function manifestProblem(data: unknown, measurement: string): string | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return 'is not a JSON object';
  const d = data as Record<string, unknown>;
  if (d.measurement !== measurement) return `names measurement ${JSON.stringify(d.measurement)}, not ${measurement}`;
  const label = checkLabel('name', d.name) ?? checkLabel('version', d.version);
  if (label !== undefined) return label;
  if (!FORMATS.includes(d.format as BinaryFormat)) return `has format ${JSON.stringify(d.format)}`;
  if (d.profile !== 'v1') return `has profile ${JSON.stringify(d.profile)}`;
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) return `has size ${JSON.stringify(d.size)}`;
  if (typeof d.installedAt !== 'string' || Number.isNaN(Date.parse(d.installedAt))) return `has installedAt ${JSON.stringify(d.installedAt)}`;
  return undefined;
}

function corrupt(path: string, m: Measurement, what: string): StoreError {
  return new StoreError('corrupt', `manifest ${path} ${what}`, { path, measurement: `${m.algo}:${m.hex}` });
}
