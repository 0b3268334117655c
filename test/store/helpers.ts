// Shared by the store tests: real binaries to install, and independent checks of the files.
import { createHash } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { measureFile } from '../../lib/io/index.js';
import { requireTool, run } from '../../testbed/tools.js';

export interface HelloBuilds {
  /** gcc -g (debug sections, build id) */
  debug: string;
  /** the same, stripped */
  stripped: string;
  /** a different program */
  other: string;
  measurement: string;
  otherMeasurement: string;
}

/** Compile a small C program twice (with debug info and stripped) and a second program, in `dir`. */
export async function buildHello(dir: string): Promise<HelloBuilds> {
  const gcc = requireTool('gcc', 'gcc');
  const strip = requireTool('strip', 'binutils');
  const src = join(dir, 'hello.c');
  writeFileSync(src, '#include <stdio.h>\nint main(void) { puts("hello from the store"); return 0; }\n');
  const debug = join(dir, 'hello-g');
  run(gcc, ['-g', '-O1', '-o', debug, src]);
  const stripped = join(dir, 'hello-s');
  run(gcc, ['-g', '-O1', '-o', stripped, src]);
  run(strip, [stripped]);
  const src2 = join(dir, 'other.c');
  writeFileSync(src2, '#include <stdio.h>\nint main(void) { puts("another"); return 3; }\n');
  const other = join(dir, 'other');
  run(gcc, ['-O1', '-o', other, src2]);
  const measurement = (await measureFile(debug)).measurement;
  const otherMeasurement = (await measureFile(other)).measurement;
  return { debug, stripped, other, measurement, otherMeasurement };
}

/** A script file (raw format: measured whole). */
export async function writeScript(path: string, body: string): Promise<string> {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return (await measureFile(path)).measurement;
}

/** sha256 of a file's whole bytes with node:crypto (independent of the store's hashing). */
export function sha256File(path: string): string {
  return `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
}

/** Every file under `dir`, relative, sorted. */
export function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...filesUnder(join(dir, e.name), `${prefix}${e.name}/`));
    else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

export function hexOf(measurement: string): string {
  return measurement.slice(measurement.indexOf(':') + 1);
}
