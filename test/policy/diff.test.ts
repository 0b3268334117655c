// diffSnapshots(): each kind of change, in words, in a deterministic order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diffSnapshots, type PolicyChange } from '../../lib/policy/index.js';
import { lines, m, snap } from './helpers.js';

const brief = (changes: PolicyChange[]) => changes.map((c) => `${c.kind} ${c.name}${c.version === undefined ? '' : ` ${c.version}`}: ${c.description}`);

const BEFORE = {
  'groups.policy': lines('group web vm:web-1 vm:web-2', 'group old vm:x'),
  'hello.policy': lines('binary hello', 'limits wall=30s', 'vms group:web', `version 1.0 approved ${m(1)}`, `version 1.1 approved ${m(2)}`, `version 0.9 revoked reason="bug" ${m(3)}`),
  'gone.policy': lines('binary gone', 'vms all', `version 1 approved ${m(10)}`, `version 2 approved ${m(11)}`),
  'tool.policy': lines('binary tool', 'vms vm:a', `version 1 approved ${m(20)}`, `version 2 superseded by=3 ${m(21)}`, `version 3 approved ${m(22)}`),
};

test('from nothing: groups, binaries and versions are all new', () => {
  const after = snap({ 'groups.policy': BEFORE['groups.policy'], 'hello.policy': BEFORE['hello.policy'] });
  assert.equal(brief(diffSnapshots(undefined, after)), [
    'group-added old: new group old: vm:x',
    'group-added web: new group web: vm:web-1, vm:web-2',
    'binary-added hello: new binary hello in hello.policy, for group:web; interpreter none, limits wall=30s memory=256M output=16M pids=64 args=64 argbytes=64K cpu=100%',
    `approved hello 1.0: hello 1.0 approved: ${m(1)}`,
    `approved hello 1.1: hello 1.1 approved: ${m(2)}`,
    'version-added hello 0.9: hello 0.9 recorded as revoked: bug (not runnable)',
  ]);
});

test('no change: no entries', () => {
  assert.equal(diffSnapshots(snap(BEFORE), snap(BEFORE)), []);
});

test('every kind of change, in order: groups, then binaries by name', () => {
  const after = snap({
    'groups.policy': lines('group web vm:web-1 vm:web-3', 'group new uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162'),
    'hello.policy': lines(
      'binary hello',
      'interpreter /usr/bin/python3',
      'limits wall=1m memory=512M',
      'vms group:web',
      `version 1.0 superseded by=1.2 ${m(1)}`,
      `version 1.1 revoked reason="CVE-1" ${m(2)} ${m(4, 'blake3')}`,
      `version 0.9 approved ${m(3)}`,
      `version 1.2 approved ${m(5)}`,
    ),
    'new.policy': lines('binary new', `version 1 approved ${m(30)}`),
    'tool.policy': lines('binary tool', 'vms all', `version 2 superseded by=3 ${m(21)}`, `version 3 approved ${m(22)}`),
  });
  const changes = diffSnapshots(snap(BEFORE), after);
  assert.equal(brief(changes), [
    'group-added new: new group new: uuid:6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162',
    'group-removed old: group old removed',
    'group-changed web: group web: added vm:web-3; removed vm:web-2',
    'binary-removed gone: binary gone removed with its 2 versions (their history is lost)',
    'interpreter-changed hello: hello: interpreter none → /usr/bin/python3',
    'limits-changed hello: hello: limits wall 30s → 1m, memory 256M → 512M',
    're-scoped hello: hello may now also run on vm:web-3; no longer on vm:web-2',
    'superseded hello 1.0: hello 1.0 superseded by 1.2 (was approved)',
    'revoked hello 1.1: hello 1.1 revoked: CVE-1 (was approved)',
    `measurements-changed hello 1.1: hello 1.1 measurements: added ${m(4, 'blake3')}`,
    'reinstated hello 0.9: hello 0.9 approved again (was revoked: bug)',
    `approved hello 1.2: hello 1.2 approved: ${m(5)}`,
    'binary-added new: new binary new in new.policy, for no VM yet; interpreter none, limits wall=30s memory=256M output=16M pids=64 args=64 argbytes=64K cpu=100%',
    `approved new 1: new 1 approved: ${m(30)}`,
    're-scoped tool: tool may now run on every VM',
    'version-removed tool 1: tool 1 removed from the policy (its history is lost)',
  ]);
  const rescope = changes.find((c) => c.kind === 're-scoped' && c.name === 'hello')!;
  assert.equal([rescope.added, rescope.removed, rescope.file, rescope.line], [['vm:web-3'], ['vm:web-2'], 'hello.policy', 1]);
  const approved = changes.find((c) => c.kind === 'approved' && c.version === '1.2')!;
  assert.equal([approved.file, approved.line, approved.added], ['hello.policy', 8, [m(5)]]);
});

test('narrowing from every VM, re-pointing a supersede, changing a revocation reason', () => {
  const before = snap({ 't.policy': lines('binary t', 'vms all', `version 1 superseded by=2 ${m(1)}`, `version 2 approved ${m(2)}`, `version 3 approved ${m(3)}`, `version 4 revoked reason="a" ${m(4)}`) });
  const after = snap({ 't.policy': lines('binary t', 'vms vm:only', `version 1 superseded by=3 ${m(1)}`, `version 2 approved ${m(2)}`, `version 3 approved ${m(3)}`, `version 4 revoked reason="b" ${m(4)}`) });
  assert.equal(brief(diffSnapshots(before, after)), [
    're-scoped t: t no longer runs on every VM; now only on vm:only',
    'superseded t 1: t 1 superseded by 3 (was superseded by 2)',
    'revoked t 4: t 4 revoked: b (was revoked: a)',
  ]);
});

test('the same change gives the same list, byte for byte, whatever the file order', () => {
  const after = { ...BEFORE, 'gone.policy': '', 'extra.policy': lines('binary extra', `version 1 approved ${m(40)}`) };
  const reversed = Object.fromEntries(Object.entries(after).reverse());
  const a = JSON.stringify(diffSnapshots(snap(BEFORE), snap(after)));
  const b = JSON.stringify(diffSnapshots(snap(Object.fromEntries(Object.entries(BEFORE).reverse())), snap(reversed)));
  assert.is(a, b);
  assert.is((JSON.parse(a) as unknown[]).length, 3); // gone removed, extra added + its approval
});

test.run();
