// decide(): one test per outcome, including the fail-closed ones.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide, type Decision } from '../../lib/policy/index.js';
import { lines, m, snap } from './helpers.js';

const UUID = '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162';
const s = snap(
  {
    'groups.policy': lines('group web vm:web-1', `group ops uuid:${UUID} group:web`),
    'hello.policy': lines(
      'binary hello',
      'vms group:ops vm:Build',
      `version 1.0 superseded by=1.1 ${m(1)}`,
      `version 1.1 superseded by=1.2 ${m(2)}`,
      `version 1.2 approved ${m(3)} ${m(3, 'blake3')}`,
      `version 0.9 revoked reason="leaks the host environment" ${m(4)}`,
      `version 1.3 superseded by=1.4 ${m(5)}`,
      `version 1.4 revoked reason="crashes." ${m(6)}`,
    ),
    'any.policy': lines('binary any', 'vms all', `version 1 approved ${m(7)}`),
    'none.policy': lines('binary none', `version 1 approved ${m(8)}`),
  },
  { commit: '0123456789abcdef0123' },
);
const web = { name: 'web-1', uuid: '00000000-0000-4000-8000-000000000001' };
const byUuid = { name: 'renamed', uuid: UUID.toUpperCase() };
const stranger = { name: 'stranger', uuid: '00000000-0000-4000-8000-000000000002' };

function denied(d: Decision): { code: string; reason: string; version: string | undefined } {
  if (d.allow) throw new Error(`expected a denial, got allow ${d.entry.name} ${d.entry.version}`);
  return { code: d.code, reason: d.reason, version: d.entry?.version };
}

test('allow: approved for the VM by group, nested group, UUID (any case), name, or all', () => {
  for (const [vm, measurement] of [[web, m(3)], [byUuid, m(3, 'blake3')], [{ name: 'Build', uuid: stranger.uuid }, m(3)], [stranger, m(7)]] as const) {
    const d = decide(s, vm, measurement);
    assert.ok(d.allow, `${vm.name} ${measurement}`);
    if (d.allow) assert.ok(d.entry.measurements.includes(measurement));
  }
});

test('no snapshot: deny everything', () => {
  assert.equal(denied(decide(undefined, web, m(3))), { code: 'no-policy', reason: 'No policy snapshot is loaded, so nothing may run.', version: undefined });
});

test('malformed measurement', () => {
  const d = denied(decide(s, web, 'sha256:XYZ\u0007'));
  assert.is(d.code, 'malformed-measurement');
  assert.is(d.reason, "'sha256:XYZ\\x07' is not a measurement (expected sha256:<64 hex> or blake3:<64 hex>).");
});

test('unknown measurement names the commit', () => {
  assert.equal(denied(decide(s, web, m(99))), { code: 'unknown-measurement', reason: `Measurement ${m(99)} is not in the policy (commit 0123456789ab).`, version: undefined });
});

test('revoked: the reason is given', () => {
  assert.equal(denied(decide(s, web, m(4))), { code: 'revoked', reason: 'hello 0.9 was revoked: leaks the host environment.', version: '0.9' });
  assert.is(denied(decide(s, web, m(6))).reason, 'hello 1.4 was revoked: crashes.');
});

test('superseded: names the successor and the approved version at the end of the chain', () => {
  assert.equal(denied(decide(s, web, m(2))), { code: 'superseded', reason: 'hello 1.1 is superseded by 1.2; run 1.2 instead.', version: '1.1' });
  assert.is(denied(decide(s, web, m(1))).reason, 'hello 1.0 is superseded by 1.1; the approved version is now 1.2.');
  assert.is(denied(decide(s, web, m(5))).reason, 'hello 1.3 is superseded by 1.4; no approved version replaces it.');
});

test('not approved for this VM: outside the scope, or no vms line at all', () => {
  assert.equal(denied(decide(s, stranger, m(3))), {
    code: 'not-approved-for-vm',
    reason: `hello 1.2 is approved, but not for VM stranger (${stranger.uuid}).`,
    version: '1.2',
  });
  // Domain names are case-sensitive: "build" is not "Build".
  assert.is(denied(decide(s, { name: 'build', uuid: stranger.uuid }, m(3))).code, 'not-approved-for-vm');
  assert.is(denied(decide(s, web, m(8))).code, 'not-approved-for-vm');
});

test('decisions are frozen', () => {
  const d = decide(s, web, m(3));
  assert.throws(() => ((d as { allow: boolean }).allow = false), TypeError);
});

test.run();
