// A request that waited is decided again with the policy in force when it goes on: a reload
// that revoked the binary meanwhile means DENIED, not an install or a run of a revoked version.
// The pipeline with a real store, audit log and policy snapshots; the store lock is held the
// way a reconciliation after a reload holds it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openAuditLog } from '../../lib/audit/index.js';
import { processWork, type FinalReply, type PipelineContext, type Work } from '../../lib/daemon/pipeline.js';
import { silentLog } from '../../lib/daemon/index.js';
import { verifyBytes } from '../../lib/exec/index.js';
import { Mutex } from '../../lib/io/index.js';
import { buildSnapshotOrThrow, type PolicySnapshot } from '../../lib/policy/index.js';
import { list, openStore } from '../../lib/store/index.js';
import { scratchDir } from '../../testbed/tools.js';

const scratch = scratchDir('vo-recheck-');
test.after(() => scratch.cleanup());

const script = new TextEncoder().encode('#!/bin/sh\necho "revoked tool ran"\n');
const snapshot = (status: string, m: string, commit: string): PolicySnapshot =>
  buildSnapshotOrThrow([{ path: 'tool.policy', text: `binary tool\ninterpreter /bin/sh\nvms all\nversion 1 ${status} ${m}\n` }], { commit });

test('revoked while the upload waited for the store lock: DENIED with the new commit, nothing installed, nothing run', async () => {
  const m = (await verifyBytes([script], 'x', { algo: 'sha256', profile: 'v1' })).measurement;
  let current = snapshot('approved', m, 'a'.repeat(40));
  const store = openStore(join(scratch.dir, 'store'), { create: true });
  const auditPath = join(scratch.dir, 'audit.jsonl');
  const storeLock = new Mutex();
  const ctx: PipelineContext = { store, audit: openAuditLog(auditPath), log: silentLog, sandbox: 'bwrap', snapshot: () => current, storeLock };
  const replies: FinalReply[] = [];
  const output: string[] = [];
  const work: Work = {
    ticket: 1,
    requestId: 7,
    request: { argv: [], env: {}, upload: script.length },
    chunks: [script],
    received: script.length,
    held: 0,
    started: performance.now(),
    abort: new AbortController(),
    done: false,
  };
  const sink = { output: (_w: Work, _s: string, b: Uint8Array) => output.push(Buffer.from(b).toString()), finish: (_w: Work, r: FinalReply) => replies.push(r) };

  // A reconciliation holds the lock; the request is measured and decided (approved), then waits.
  let release!: () => void;
  const held = storeLock.run(() => new Promise<void>((done) => (release = done)));
  const running = processWork(ctx, { name: 'vm-a', uuid: '6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162' }, work, sink);
  await new Promise((done) => setTimeout(done, 50));
  assert.is(replies.length, 0, 'still waiting for the lock');
  // The reload that took the lock revoked it.
  current = snapshot('revoked reason="found to leak"', m, 'b'.repeat(40));
  release();
  await held;
  await running;

  assert.is(replies.length, 1);
  assert.is(replies[0]!.type, 'DENIED');
  if (replies[0]!.type === 'DENIED') assert.is(replies[0]!.body.code, 'revoked');
  assert.equal(output, [], 'nothing ran');
  assert.equal(list(store), [], 'nothing installed again');
  const records = readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.is(records.length, 1);
  assert.is(records[0]!.decision, 'deny');
  assert.is(records[0]!.commit, 'b'.repeat(40));
  ctx.audit.close();
});

test.run();
