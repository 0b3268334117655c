// `virt-offload hook install|uninstall`: put the libvirt qemu hook (dist/hooks/virt-offload-qemu.cjs,
// built from hooks/) into <hooks-dir>/qemu.d/virt-offload, or take it out.
//
// libvirt runs hooks with a minimal environment (PATH=/usr/local/sbin:…:/bin, no NODE_*), so
// the file starts with the absolute path of the node that runs this command, and the daemon's
// control socket is written into the file: the hook reads no configuration at run time.
import { lstatSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError, VirtOffloadError } from '../../lib/errors.js';
import { createAtomicFile, fsyncDir } from '../../lib/io/index.js';
import { VERSION } from '../../lib/version.js';
import { EXIT, reportFailure } from '../exit.js';

export const DEFAULT_HOOKS_DIR = '/etc/libvirt/hooks';
const HOOK_NAME = 'virt-offload';
/** The second line of every hook file we write: uninstall removes only a file that has it. */
const MARKER = '// virt-offload libvirt qemu hook';

interface HookPaths {
  readonly hooksDir: string;
  readonly dropInDir: string;
  readonly path: string;
}

function paths(opts: Record<string, unknown>): HookPaths {
  const dir = typeof opts.hooksDir === 'string' ? opts.hooksDir : DEFAULT_HOOKS_DIR;
  if (dir === '') throw new UsageError('--hooks-dir: empty path', '--hooks-dir');
  const hooksDir = resolve(dir);
  const dropInDir = join(hooksDir, 'qemu.d');
  return { hooksDir, dropInDir, path: join(dropInDir, HOOK_NAME) };
}

function absolute(opts: Record<string, unknown>, key: string, flag: string, fallback: string): string {
  const value = typeof opts[key] === 'string' ? (opts[key] as string) : fallback;
  if (!isAbsolute(value)) throw new UsageError(`${flag} ${value}: must be an absolute path (libvirt runs the hook from an unknown directory)`, flag);
  if (/[\0\n\r]/.test(value)) throw new UsageError(`${flag}: the path contains a NUL or line break`, flag);
  return value;
}

/** The built hook bundle, next to this command's bundle (dist/commands/hook.cjs → dist/hooks/). */
function hookBundle(): string {
  const file = join(__dirname, '..', 'hooks', 'virt-offload-qemu.cjs');
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new VirtOffloadError('EIO', `cannot read the built hook ${file} (run npm run build): ${(err as Error).message}`);
  }
}

function isExecutableFile(path: string): boolean {
  try {
    const st = statSync(path);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Another qemu hook libvirtd would have found at its start (then it watches qemu.d already). */
function otherHookExists(p: HookPaths): boolean {
  if (isExecutableFile(join(p.hooksDir, 'qemu'))) return true;
  let names: string[];
  try {
    names = readdirSync(p.dropInDir);
  } catch {
    return false;
  }
  return names.some((n) => n !== HOOK_NAME && !n.startsWith('.') && isExecutableFile(join(p.dropInDir, n)));
}

function currentContent(path: string): string | undefined {
  try {
    const st = lstatSync(path);
    if (!st.isFile()) throw new VirtOffloadError('EIO', `${path} exists and is not a regular file; refusing to replace it`);
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (err instanceof VirtOffloadError) throw err;
    // ENOTDIR (a --hooks-dir that is a file), EACCES…: say where, not a stack trace.
    throw new VirtOffloadError('EIO', code === 'ENOTDIR' ? `${path}: a component of the path is not a directory (check --hooks-dir)` : `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export async function runHookInstall(opts: Record<string, unknown>): Promise<number> {
  try {
    const p = paths(opts);
    const runDir = absolute(opts, 'runDir', '--run-dir', '/run/virt-offload');
    const control = join(runDir, 'control.sock');
    const node = absolute(opts, 'node', '--node', process.execPath);
    if (!isExecutableFile(node)) throw new UsageError(`--node ${node}: not an executable file`, '--node');
    const logFile = opts.logFile === false ? undefined : absolute(opts, 'logFile', '--log-file', '/var/log/virt-offload/hook.log');
    const config = { control, ...(logFile === undefined ? {} : { logFile }) };
    const content = `#!${node}\n${MARKER} (virt-offload ${VERSION}), written by \`virt-offload hook install\`; remove it with \`virt-offload hook uninstall\`.\n"use strict";\nvar VIRT_OFFLOAD_HOOK_CONFIG = ${JSON.stringify(config)};\n${hookBundle()}`;

    const before = currentContent(p.path);
    const reloadNeeded = before === undefined && !otherHookExists(p);
    let action: 'installed' | 'updated' | 'unchanged';
    if (before === content && isExecutableFile(p.path)) {
      action = 'unchanged';
    } else {
      if (before !== undefined && !before.split('\n', 2)[1]?.startsWith(MARKER)) {
        throw new VirtOffloadError('EIO', `${p.path} exists and was not written by virt-offload; refusing to replace it`);
      }
      try {
        mkdirSync(p.dropInDir, { recursive: true, mode: 0o755 });
      } catch (err) {
        throw new VirtOffloadError('EIO', `cannot create ${p.dropInDir}: ${(err as Error).message}`, { cause: err });
      }
      const file = createAtomicFile(p.path, { mode: 0o755, tempPath: join(p.dropInDir, `.${HOOK_NAME}.tmp-${process.pid}`), what: 'the libvirt hook' });
      try {
        file.write(Buffer.from(content, 'utf8'));
        file.commit();
      } finally {
        file.abort();
      }
      action = before === undefined ? 'installed' : 'updated';
    }
    const result = { action, path: p.path, interpreter: node, control, logFile: logFile ?? null, libvirtdReloadNeeded: reloadNeeded };
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(`${action} ${p.path} (interpreter ${node}, control socket ${control}${logFile === undefined ? '' : `, log ${logFile}`})\n`);
      if (reloadNeeded) {
        process.stdout.write(
          'No other qemu hook was installed: a libvirtd that is already running looked for hooks when it started, found none,\n' +
            'and will ignore this one until it reloads: send it SIGHUP (kill -HUP $(cat /run/libvirtd.pid), or systemctl reload libvirtd) or restart it.\n',
        );
      }
    }
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}

export async function runHookUninstall(opts: Record<string, unknown>): Promise<number> {
  try {
    const p = paths(opts);
    const before = currentContent(p.path);
    let action: 'removed' | 'absent' = 'absent';
    if (before !== undefined) {
      if (!before.split('\n', 2)[1]?.startsWith(MARKER)) throw new VirtOffloadError('EIO', `${p.path} was not written by virt-offload; refusing to remove it`);
      unlinkSync(p.path);
      fsyncDir(p.dropInDir);
      action = 'removed';
    }
    if (opts.json === true) process.stdout.write(`${JSON.stringify({ action, path: p.path })}\n`);
    else process.stdout.write(action === 'removed' ? `removed ${p.path}\n` : `not installed: ${p.path} does not exist; nothing to do\n`);
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}
