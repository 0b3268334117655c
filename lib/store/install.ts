// Install and uninstall. Install re-measures the bytes while it writes them, so what lands in
// the store is exactly the canonical image whose digest was compared with the expected
// measurement; nothing is renamed into place unless they match.
import { readSync } from 'node:fs';
import type { BinaryFormat } from '../errors.js';
import { openFileReader } from '../io/index.js';
import { detectFormat, measure, type ByteReader, type Measurement, type MeasureResult } from '../measure/index.js';
import { StoreError } from './errors.js';
import { checkObjectFile, closeQuietly, removeAtomically, writeAtomically } from './files.js';
import { manifestDir, manifestPath, objectDir, objectPath, parseStoreMeasurement, type Store } from './layout.js';
import { checkLabel, readManifest, renderManifest, type Manifest } from './manifest.js';

export interface InstallSpec {
  /** The measurement the policy approved; the bytes must measure to exactly this. */
  readonly measurement: string;
  readonly name: string;
  readonly version: string;
  /** Recorded in the manifest; default now. */
  readonly installedAt?: string;
}

/**
 * installed: object and manifest written; repaired: an object that no longer verified was
 * replaced; manifest-updated: the object verified, only its manifest was (re)written;
 * unchanged: already installed, verified, same name and version (nothing read from the source).
 */
export type InstallAction = 'installed' | 'repaired' | 'manifest-updated' | 'unchanged';

export interface InstallResult {
  readonly measurement: string;
  readonly action: InstallAction;
  readonly path: string;
  readonly manifest: Manifest;
}

/**
 * Install the canonical image of `source` under `spec.measurement`. Idempotent. Throws
 * StoreError('mismatch') naming both measurements when the bytes measure to something else
 * (and leaves nothing behind), or the measurement core's typed error for a malformed binary.
 */
export async function install(store: Store, spec: InstallSpec, source: ByteReader): Promise<InstallResult> {
  const m = parseStoreMeasurement(spec.measurement);
  const label = checkLabel('name', spec.name) ?? checkLabel('version', spec.version);
  if (label !== undefined) throw new StoreError('invalid', `cannot install ${spec.measurement}: ${label}`, { measurement: spec.measurement });
  const installedAt = spec.installedAt ?? new Date().toISOString();
  const path = objectPath(store, m);

  const present = await checkObjectFile(path, m);
  let repaired = false;
  if (present !== undefined) {
    const good = present.digest === spec.measurement && present.problem === undefined;
    let format: ReturnType<typeof formatOf> | undefined;
    try {
      format = good ? formatOf(present.fd) : undefined;
    } finally {
      // Also when the read fails (EIO): the daemon is long-lived.
      closeQuietly(present.fd);
    }
    if (good) {
      const old = readManifestOrUndefined(store, m);
      if (old !== undefined && old.name === spec.name && old.version === spec.version && old.size === present.size) {
        return { measurement: spec.measurement, action: 'unchanged', path, manifest: old };
      }
      const manifest = manifestFor(spec, old?.format ?? format!, present.size, installedAt);
      await writeManifest(store, m, manifest);
      return { measurement: spec.measurement, action: 'manifest-updated', path, manifest };
    }
    repaired = true;
  }

  let result: MeasureResult | undefined;
  await writeAtomically(objectDir(store, m.algo), m.hex, async (write) => {
    result = await measure(source, { algo: m.algo, profile: 'v1', onChunk: write });
    if (result.measurement !== spec.measurement) {
      throw new StoreError('mismatch', `refusing to install ${spec.name} ${spec.version}: the bytes measure to ${result.measurement}, not the expected ${spec.measurement}`, {
        measurement: spec.measurement,
        actual: result.measurement,
      });
    }
  });
  const manifest = manifestFor(spec, result!.format, result!.hashedBytes, installedAt);
  await writeManifest(store, m, manifest);
  return { measurement: spec.measurement, action: repaired ? 'repaired' : 'installed', path, manifest };
}

/** install() from a file on the host (opened read-only; symlinks followed like `measure`). */
export async function installFile(store: Store, spec: InstallSpec, file: string): Promise<InstallResult> {
  const reader = openFileReader(file);
  try {
    return await install(store, spec, reader);
  } finally {
    reader.close();
  }
}

export interface UninstallResult {
  readonly measurement: string;
  /** Whether anything (manifest or object) was there to remove. */
  readonly removed: boolean;
  /** The manifest that was removed, when it was readable. */
  readonly manifest: Manifest | undefined;
}

/**
 * Remove an installed measurement: first its manifest (from then on it is not "installed"),
 * then its object, each by an atomic rename to a temp name and an unlink, each synced.
 * A crash in between leaves an object without manifest, which recover() removes.
 */
export function uninstall(store: Store, measurement: string): UninstallResult {
  const m = parseStoreMeasurement(measurement);
  const manifest = readManifestOrUndefined(store, m);
  const a = removeAtomically(manifestDir(store, m.algo), `${m.hex}.json`);
  const b = removeAtomically(objectDir(store, m.algo), m.hex);
  return { measurement, removed: a || b, manifest };
}

function manifestFor(spec: InstallSpec, format: BinaryFormat, size: number, installedAt: string): Manifest {
  return Object.freeze({ measurement: spec.measurement, name: spec.name, version: spec.version, format, profile: 'v1', size, installedAt });
}

async function writeManifest(store: Store, m: Measurement, manifest: Manifest): Promise<void> {
  const bytes = renderManifest(manifest);
  await writeAtomically(manifestDir(store, m.algo), `${m.hex}.json`, (write) => write(bytes));
}

/** A manifest that is missing or damaged counts as absent here (install rewrites it). */
function readManifestOrUndefined(store: Store, m: Measurement): Manifest | undefined {
  try {
    return readManifest(manifestPath(store, m), m);
  } catch (err) {
    if (err instanceof StoreError) return undefined;
    throw err;
  }
}

/** The format of an installed object, from its first bytes (as the canonicalizer chose it). */
function formatOf(fd: number): BinaryFormat {
  const head = new Uint8Array(64);
  const n = readSync(fd, head, 0, head.length, 0);
  return detectFormat(head.subarray(0, n));
}
