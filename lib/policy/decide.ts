// The decision: may this VM run the binary with this measurement? One map lookup and a
// few set lookups. Anything not positively approved for this VM is a denial, and no
// snapshot at all is a denial too (fail closed).
import { isMeasurement } from './names.js';
import type { PolicyEntry, PolicySnapshot, VmScope } from './types.js';
import { clipText } from '../text.js';

export type DenyCode = 'no-policy' | 'malformed-measurement' | 'unknown-measurement' | 'revoked' | 'superseded' | 'not-approved-for-vm';

export type Decision =
  | { readonly allow: true; readonly entry: PolicyEntry }
  | { readonly allow: false; readonly code: DenyCode; readonly reason: string; readonly entry?: PolicyEntry };

/** A VM as the daemon knows it from the socket the request arrived on (never from the guest's words). */
export interface VmIdentity {
  /** libvirt domain name. */
  readonly name: string;
  readonly uuid: string;
}

export function decide(snapshot: PolicySnapshot | undefined, vm: VmIdentity, measurement: string): Decision {
  if (snapshot === undefined) return deny('no-policy', 'No policy snapshot is loaded, so nothing may run.');
  if (!isMeasurement(measurement)) return deny('malformed-measurement', `'${printable(measurement)}' is not a measurement (expected sha256:<64 hex> or blake3:<64 hex>).`);
  const entry = snapshot.index.get(measurement);
  if (entry === undefined) return deny('unknown-measurement', `Measurement ${measurement} is not in the policy${atCommit(snapshot)}.`);
  const what = `${entry.name} ${entry.version}`;
  if (entry.status === 'revoked') return deny('revoked', `${what} was revoked: ${sentence(entry.reason ?? 'no reason given')}`, entry);
  if (entry.status === 'superseded') {
    const now = entry.replacement === undefined ? 'no approved version replaces it' : entry.replacement === entry.supersededBy ? `run ${entry.replacement} instead` : `the approved version is now ${entry.replacement}`;
    return deny('superseded', `${what} is superseded by ${entry.supersededBy ?? '?'}; ${now}.`, entry);
  }
  if (!inScope(entry.scope, vm)) return deny('not-approved-for-vm', `${what} is approved, but not for VM ${printable(vm.name)} (${printable(vm.uuid)}).`, entry);
  return Object.freeze({ allow: true, entry });
}

/** Whether the scope lets this VM run: all VMs, its domain name, or its UUID (any case). */
export function inScope(scope: VmScope, vm: VmIdentity): boolean {
  return scope.allVms || scope.names.has(vm.name) || scope.uuids.has(vm.uuid.toLowerCase());
}

function deny(code: DenyCode, reason: string, entry?: PolicyEntry): Decision {
  return Object.freeze(entry === undefined ? { allow: false, code, reason } : { allow: false, code, reason, entry });
}

/** End the text with one full stop unless it already ends a sentence. */
function sentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

function atCommit(snapshot: PolicySnapshot): string {
  return snapshot.commit === undefined ? '' : ` (commit ${snapshot.commit.slice(0, 12)})`;
}

/** Guest-supplied text goes into an audit line: cap it and show control characters as escapes. */
function printable(text: string): string {
  const short = clipText(text, 81);
  return short.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
