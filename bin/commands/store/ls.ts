// `virt-offload store ls`: what is installed (measurement, name, version, size, installed-at),
// or one JSON object per measurement with --json. Nothing is hashed: `store verify` does that.
import { list } from '../../../lib/store/index.js';
import { EXIT, reportFailure } from '../../exit.js';
import { columns, openExistingStore } from './common.js';

export async function runStoreLs(opts: Record<string, unknown>): Promise<number> {
  try {
    const items = list(openExistingStore(opts));
    if (opts.json === true) {
      for (const o of items) {
        const m = o.manifest;
        const problem = m === undefined ? (o.manifestError ?? 'no manifest') : o.objectSize === undefined ? 'no object' : undefined;
        const record = { measurement: o.measurement, name: m?.name ?? null, version: m?.version ?? null, size: o.objectSize ?? null, installedAt: m?.installedAt ?? null, format: m?.format ?? null, complete: problem === undefined, ...(problem === undefined ? {} : { problem }) };
        process.stdout.write(`${JSON.stringify(record)}\n`);
      }
      return EXIT.ok;
    }
    const rows = items.map((o) => {
      const m = o.manifest;
      const note = m === undefined ? '  (no manifest: run `store verify`)' : o.objectSize === undefined ? '  (no object: run `store verify`)' : '';
      return [o.measurement, m?.name ?? '-', m?.version ?? '-', o.objectSize === undefined ? '-' : String(o.objectSize), `${m?.installedAt ?? '-'}${note}`];
    });
    if (rows.length > 0) process.stdout.write(columns([['MEASUREMENT', 'NAME', 'VERSION', 'SIZE', 'INSTALLED-AT'], ...rows]));
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}
