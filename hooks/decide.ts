// What the hook does for one libvirt call (pure: argv + the facts read from the XML in, an
// action out). libvirt's qemu hook docs: prepare/start/started failing stops the start;
// a failing `reconnect` kills the running QEMU; `stopped`/`release` cannot be stopped.
import type { DomainFacts } from './domain-xml.js';

export type HookAction =
  /** Nothing to do (not our domain, or an operation we do not act on). */
  | { readonly kind: 'none'; readonly why: string }
  /** prepare begin of a domain that requires the device: the daemon must answer, or the start fails. */
  | { readonly kind: 'check' }
  /** started/reconnect: ask the daemon to add the VM and attach its device. */
  | { readonly kind: 'add'; readonly port: string; readonly failStartOnError: boolean }
  /** stopped/release: ask the daemon to remove the VM (its device went with QEMU). */
  | { readonly kind: 'remove' };

export function decide(operation: string, subOperation: string, facts: DomainFacts): HookAction {
  const offload = facts.offload;
  if (offload === undefined) return { kind: 'none', why: 'the domain has no virt-offload metadata' };
  const op = `${operation} ${subOperation}`;
  // A stop removes the VM whatever `enabled` says now: it may have been switched off in the
  // live definition while the VM ran with the device, and the daemon would keep it otherwise.
  if (op === 'stopped end' || op === 'release end') return { kind: 'remove' };
  if (!offload.enabled) return { kind: 'none', why: 'the domain has virt-offload metadata with enabled other than "yes"' };
  switch (op) {
    case 'prepare begin':
      // The earliest point that stops a start, before libvirt labels or allocates anything.
      return offload.required ? { kind: 'check' } : { kind: 'none', why: 'prepare: the device is not required' };
    case 'started begin':
      // Failing here makes libvirt kill the just-started QEMU: only when the device is required.
      return { kind: 'add', port: offload.port, failStartOnError: offload.required };
    case 'reconnect begin':
      // libvirtd restarted while the domain runs; failing would kill a running VM: never fail.
      return { kind: 'add', port: offload.port, failStartOnError: false };
    case 'stopped end':
    case 'release end':
      return { kind: 'remove' };
    default:
      return { kind: 'none', why: `nothing to do on ${op}` };
  }
}
