// `virt-offload store verify`: re-hash every installed object and check every manifest.
// Prints each problem (status, measurement, name and version, path, what is wrong) and exits
// 1 if there is any; --json prints one object per file checked, ok ones included.
import { verify, type VerifyItem } from '../../../lib/store/index.js';
import { EXIT, reportFailure } from '../../exit.js';
import { openExistingStore } from './common.js';

export async function runStoreVerify(opts: Record<string, unknown>): Promise<number> {
  try {
    const store = openExistingStore(opts);
    const report = await verify(store);
    const problems = report.items.filter((i) => i.status !== 'ok');
    if (opts.json === true) {
      for (const i of report.items) process.stdout.write(`${JSON.stringify(i)}\n`);
    } else {
      for (const i of problems) process.stdout.write(`${line(i)}\n`);
      const ok = report.items.length - problems.length;
      process.stdout.write(`store ${store.root}: ${ok} ok, ${problems.length} problem${problems.length === 1 ? '' : 's'}\n`);
    }
    if (problems.length === 0) return EXIT.ok;
    const differ = problems.filter((i) => i.status === 'differs').length;
    process.stderr.write(`virt-offload: store ${store.root} failed verification: ${problems.length} problem${problems.length === 1 ? '' : 's'}${differ > 0 ? ` (${differ === 1 ? '1 object differs from its measurement and' : `${differ} objects differ from their measurement and`} will not be run)` : ''}\n`);
    return EXIT.failed;
  } catch (err) {
    return reportFailure(err);
  }
}

function line(i: VerifyItem): string {
  const who = i.name === undefined ? '' : ` ${i.name} ${i.version ?? ''}`;
  return `${i.status}  ${i.measurement ?? '-'}${who}  ${i.path}: ${i.detail}`;
}
