// Driving real tools, for the tests, benches and demo (testbed/): find them or fail with what
// to install, run them without a shell, and make scratch directories that are removed afterwards.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const found = new Map<string, string>();

/** Path of `tool` on PATH, or throw saying which Debian package provides it. */
export function requireTool(tool: string, debianPackage: string): string {
  const known = found.get(tool);
  if (known !== undefined) return known;
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status !== 0 || path === '') {
    throw new Error(`this test needs \`${tool}\`: install it with \`apt-get install ${debianPackage}\` (scripts/install-test-deps does)`);
  }
  found.set(tool, path);
  return path;
}

/** Run a program (never through a shell); return stdout; throw with stderr on failure. */
export function run(cmd: string, args: readonly string[], options: { cwd?: string; input?: string | Uint8Array; env?: NodeJS.ProcessEnv } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...options });
  } catch (err) {
    const e = err as { stderr?: string; status?: number };
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${e.status}): ${e.stderr ?? String(err)}`);
  }
}

/**
 * Write the VCDIFF delta from `base` to `target` at `out` (replacing it) with the real xdelta3,
 * in the plain form lib/patch accepts: no application header, no secondary compression, no
 * adler32 (`xdelta3 -e -A -S none -n`, what policies/README.md tells reviewers to run).
 */
export function vcdiffDelta(base: string, target: string, out: string): void {
  run(requireTool('xdelta3', 'xdelta3'), ['-e', '-A', '-S', 'none', '-n', '-f', '-s', base, target, out]);
}

/**
 * A full garbage collection on demand, for tests that check what is still reachable (through a
 * WeakRef). Reached as Jest's leak detector does: `gc` is exposed to one fresh context only, and
 * the flag is turned off again.
 */
export function garbageCollector(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  setFlagsFromString('--no-expose-gc');
  return gc;
}

/** A fresh temporary directory and a function that removes it. */
export function scratchDir(prefix = 'vo-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Repository root (this file runs from dist/testbed/). */
export const repoRoot = new URL('../../', import.meta.url).pathname;

/**
 * Poll `check` every intervalMs (default 25) until it holds; rejects after timeoutMs naming
 * `what` and `detail()`.
 */
export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000, detail: () => string = () => '', intervalMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail() === '' ? '' : `: ${detail()}`}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
