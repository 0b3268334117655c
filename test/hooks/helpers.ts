// Helpers for the hook tests: install the real hook file with the real CLI, run it as libvirt
// does (argv NAME OP SUBOP -, the domain XML on stdin), and a hot-plug route that records
// what the daemon asked of it (the only fake: the daemon's unit under test is the hook path).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { AttachResult, AttachSpec, DetachResult, DetachSpec, OffloadDeviceRoute } from '../../lib/hotplug/index.js';
import { repoRoot, run } from '../../testbed/tools.js';

export const NS = 'http://virt-offload.org/xmlns/domain/1.0';

export interface HookRun {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run the installed hook file as libvirt does (async: the daemon under test shares our event loop). */
export function runHook(file: string, args: readonly string[], input: string | Uint8Array): Promise<HookRun> {
  return new Promise((done, fail) => {
    const started = process.hrtime.bigint();
    // libvirt's environment: a fixed PATH, nothing else of ours.
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => {}); // EPIPE when the hook stops reading early is its right
    child.on('error', fail);
    child.on('close', (status) =>
      done({ status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: Number(process.hrtime.bigint() - started) / 1e6 }),
    );
    child.stdin.end(input);
  });
}

/** Install the hook with the shipped CLI; returns the installed file's path. */
export function installHook(hooksDir: string, runDir: string, extra: readonly string[] = []): string {
  run(process.execPath, [join(repoRoot, 'dist/virt-offload.cjs'), 'hook', 'install', '--hooks-dir', hooksDir, '--run-dir', runDir, ...extra]);
  return join(hooksDir, 'qemu.d', 'virt-offload');
}

export function domainXml(options: { name?: string; uuid?: string; metadata?: string } = {}): string {
  const name = options.name ?? 'vm-hook';
  const uuid = options.uuid ?? '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162';
  return `<domain type='qemu' id='3'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='KiB'>262144</memory>
${options.metadata === undefined ? '' : `  <metadata>\n    ${options.metadata}\n  </metadata>\n`}  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
`;
}

export const optIn = (attrs = 'enabled="yes"'): string => `<vo:offload xmlns:vo="${NS}" ${attrs}/>`;

/** A route that records calls; `failures` attach calls fail before one succeeds. */
export class RecordingRoute implements OffloadDeviceRoute {
  readonly attaches: AttachSpec[] = [];
  readonly detaches: DetachSpec[] = [];
  failures: number;
  failWith: string;
  closed = false;
  /** Set by the test to observe when attach was called relative to other events. */
  onAttach: (() => void) | undefined;

  constructor(failures = 0, failWith = 'Requested operation is not valid: domain is not running') {
    this.failures = failures;
    this.failWith = failWith;
  }

  /** While set, attach calls wait for it (a libvirt call held up by the domain's job). */
  hold: Promise<void> | undefined;
  /** Calls in flight, which close() waits for (as LibvirtRoute's one-at-a-time queue does). */
  #inFlight: Promise<unknown> = Promise.resolve();

  async attach(spec: AttachSpec): Promise<AttachResult> {
    const call = this.#attach(spec);
    this.#inFlight = call.catch(() => undefined);
    return call;
  }

  async #attach(spec: AttachSpec): Promise<AttachResult> {
    this.attaches.push({ ...spec });
    this.onAttach?.();
    if (this.hold !== undefined) await this.hold;
    if (this.failures > 0) {
      this.failures--;
      throw new Error(this.failWith);
    }
    return { vm: spec.vm, portName: spec.portName ?? 'virt-offload.0', chardevId: 'ua-vo', portId: 'ua-vo', bus: 'virtio-serial0.0', steps: [], alreadyAttached: false, elapsedMs: 1 };
  }

  async detach(spec: DetachSpec): Promise<DetachResult> {
    this.detaches.push({ ...spec });
    return { vm: spec.vm, portName: spec.portName ?? 'virt-offload.0', steps: [], alreadyDetached: false, elapsedMs: 1 };
  }

  async close(): Promise<void> {
    await this.#inFlight;
    this.closed = true;
  }
}

