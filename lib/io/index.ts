// Host file access shared by the CLI and the adapters (store, daemon), and the one-at-a-time
// task queue of the daemon and the hot-plug routes.
export { fileError, openFileReader } from './file-reader.js';
export type { FileReader } from './file-reader.js';
export { measureFile } from './measure-file.js';
export type { MeasureFileOptions } from './measure-file.js';
export { readOpenFile } from './read-fd.js';
export { createAtomicFile, fsyncDir } from './atomic-file.js';
export type { AtomicFile, AtomicFileOptions } from './atomic-file.js';
export { Mutex } from './mutex.js';
export { waitForProbe } from './wait-for.js';
export type { ProbeResult } from './wait-for.js';
export { lstatOrUndefined, octal, untrustedAncestorProblem, untrustedAncestorProblemBeforeMake, untrustedDirProblem } from './trusted-dir.js';
