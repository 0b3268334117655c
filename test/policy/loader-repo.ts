// Real git repositories and real SSH signing keys for the loader and CLI tests.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { requireTool, run, scratchDir } from '../../testbed/tools.js';

export interface TestRepo {
  readonly dir: string;
  git(...args: string[]): string;
  write(path: string, text: string): void;
  /** Commit everything; signed with `key` (a private key file) when given. Returns the commit id. */
  commit(message: string, key?: string): string;
}

// Fixed identity and no user/system config surprises (a global commit.gpgsign, hooks…).
const IDENTITY = ['-c', 'user.name=Policy Tester', '-c', 'user.email=tester@example.com', '-c', 'commit.gpgsign=false', '-c', 'core.hooksPath=/dev/null'];

export function makeRepo(dir: string): TestRepo {
  requireTool('git', 'git');
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]) => run('git', [...IDENTITY, ...args], { cwd: dir });
  git('init', '-q', '-b', 'main');
  return {
    dir,
    git,
    write(path, text) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    },
    commit(message, key) {
      git('add', '-A');
      const sign = key === undefined ? [] : ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${key}`];
      run('git', [...IDENTITY, ...sign, 'commit', '-q', '--allow-empty', ...(key === undefined ? [] : ['-S']), '-m', message], { cwd: dir });
      return git('rev-parse', 'HEAD').trim();
    },
  };
}

/** A fresh ed25519 key pair (no passphrase): returns the private key's path and the public key line. */
export function makeKey(dir: string, name: string): { key: string; pub: string } {
  requireTool('ssh-keygen', 'openssh-client');
  const key = join(dir, name);
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key]);
  return { key, pub: run('cat', [`${key}.pub`]).trim() };
}

/** An allowed-signers file trusting `pub` for git signatures by `email`. */
export function allowedSigners(dir: string, email: string, pub: string): string {
  const path = join(dir, 'allowed_signers');
  writeFileSync(path, `${email} namespaces="git" ${pub}\n`);
  return path;
}

export { scratchDir };

/** Deterministic measurement-shaped strings (not digests of anything). */
export function m(n: number): string {
  return `sha256:${n.toString(16).padStart(64, '0')}`;
}

export const GROUPS = 'group build vm:build-01 vm:build-02\ngroup ci uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162\n';

export function helloV1(): string {
  return `# hello\nbinary hello\nlimits wall=10s\nvms group:build\n\nversion 1.0 approved ${m(1)}\n`;
}
