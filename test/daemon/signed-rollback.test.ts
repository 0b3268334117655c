// --require-signed against a rollback: a signature proves who wrote a commit, not that it is the
// latest. The daemon remembers the last signed commit it accepted (in the store's directory,
// across restarts) and refuses a HEAD that does not descend from it: an older signed commit
// would approve again what a later one revoked. Real git, real SSH signatures.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, type Daemon } from '../../lib/daemon/index.js';
import { allowedSigners, GROUPS, helloV1, m, makeKey, makeRepo, scratchDir } from '../policy/loader-repo.js';

test('a HEAD reset to an older signed commit is refused, also after a restart; removing the record accepts it', async () => {
  const { dir, cleanup } = scratchDir('vo-rollback-');
  const daemons: Daemon[] = [];
  try {
    const key = makeKey(dir, 'signer');
    const signers = allowedSigners(dir, 'signer@example.com', key.pub);
    const repo = makeRepo(join(dir, 'policy'));
    repo.write('groups.policy', GROUPS);
    repo.write('binaries/hello.policy', `${helloV1()}version 1.1 approved ${m(2)}\n`);
    const a = repo.commit('approve 1.1', key.key);
    const storeDir = join(dir, 'store');
    const start = async (): Promise<Daemon> => {
      const d = await startDaemon({ runDir: join(dir, `run-${daemons.length}`), policyRepo: repo.dir, storeDir, auditLog: join(dir, 'audit.jsonl'), sandbox: 'bwrap', requireSigned: signers });
      daemons.push(d);
      return d;
    };
    const d = await start();
    const record = join(storeDir, 'accepted-policy-commit');
    assert.is(readFileSync(record, 'utf8'), `${a}\n`);
    repo.write('binaries/hello.policy', `${helloV1()}version 1.1 revoked reason="leaks" ${m(2)}\n`);
    const b = repo.commit('revoke 1.1', key.key);
    assert.equal(await d.reload(), { ok: true, commit: b, storeChanges: 0 });
    assert.is(readFileSync(record, 'utf8'), `${b}\n`);

    // The mirror goes back to A: signed, valid, and it approves 1.1 again.
    repo.git('reset', '-q', '--hard', a);
    const refused = await d.reload();
    assert.is(refused.ok, false);
    assert.match(String(refused.error), `signed commit ${a} does not descend from ${b}, the last signed policy commit this host accepted`);
    assert.is((d.status() as { policy: { commit?: string } }).policy.commit, b, 'the revoking commit stays in force');
    // A graft that makes A a child of B fools git's walker, not ours.
    writeFileSync(join(repo.dir, '.git', 'info', 'grafts'), `${a} ${b}\n`);
    const grafted = await d.reload();
    assert.is(grafted.ok, false);
    assert.match(String(grafted.error), `signed commit ${a} does not descend from ${b}`);
    rmSync(join(repo.dir, '.git', 'info', 'grafts'));
    await d.close();

    // A restart remembers it: nothing is loaded rather than the older commit.
    const again = await start();
    assert.is((again.status() as { policy: { loaded: boolean } }).policy.loaded, false);
    await again.close();

    // The admin means it: the record goes, the older commit is accepted (and recorded).
    rmSync(record);
    const accepted = await start();
    assert.is((accepted.status() as { policy: { commit?: string } }).policy.commit, a);
    assert.is(readFileSync(record, 'utf8'), `${a}\n`);
    // A descendant of it is accepted as usual.
    repo.write('binaries/hello.policy', `${helloV1()}version 1.1 approved ${m(2)}\nversion 1.2 approved ${m(3)}\n`);
    const c = repo.commit('approve 1.2', key.key);
    assert.is((await accepted.reload()).commit, c);
    assert.ok(existsSync(record));
  } finally {
    for (const d of daemons) await d.close().catch(() => undefined);
    cleanup();
  }
});

test.run();
