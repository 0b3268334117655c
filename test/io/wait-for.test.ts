// waitForProbe: the wait the libvirt connection (D-Bus signals) and the guest consoles share:
// an answer already there, one an event brings, an error the probe finds, the timeout; the
// waiter leaves the set whichever way it settles.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { waitForProbe, type ProbeResult } from '../../lib/io/index.js';

test('resolves at once, or at the event that brings the answer; the waiter is gone after', async () => {
  const waiters = new Set<() => void>();
  assert.is(await waitForProbe(waiters, 1000, () => ({ value: 'now' }), () => new Error('timeout')), 'now');
  assert.is(waiters.size, 0);
  let seen: string | undefined;
  const waiting = waitForProbe<string>(waiters, 1000, () => (seen === undefined ? undefined : { value: seen }), () => new Error('timeout'));
  assert.is(waiters.size, 1);
  seen = 'later';
  for (const w of [...waiters]) w();
  assert.is(await waiting, 'later');
  assert.is(waiters.size, 0);
});

test('an error the probe finds rejects; no answer rejects with the timeout error', async () => {
  const waiters = new Set<() => void>();
  let result: ProbeResult<number>;
  const failing = waitForProbe<number>(waiters, 1000, () => result, () => new Error('timeout'));
  result = { error: new Error('the source closed') };
  for (const w of [...waiters]) w();
  await failing.then(
    () => assert.unreachable('must reject'),
    (err: Error) => assert.is(err.message, 'the source closed'),
  );
  const started = Date.now();
  await waitForProbe(waiters, 30, () => undefined, () => new Error('nothing within 30 ms')).then(
    () => assert.unreachable('must time out'),
    (err: Error) => assert.is(err.message, 'nothing within 30 ms'),
  );
  assert.ok(Date.now() - started >= 25);
  assert.is(waiters.size, 0);
});

test.run();
