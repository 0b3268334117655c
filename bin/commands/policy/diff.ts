// `virt-offload policy diff` — not implemented yet.
import { reportFailure } from '../../exit.js';
import { VirtOffloadError } from '../../../lib/errors.js';

// eslint-disable-next-line @typescript-eslint/no-unused-vars
export async function runPolicyDiff(rev1: string | undefined, rev2: string | undefined, opts: Record<string, unknown>): Promise<number> {
  return reportFailure(new VirtOffloadError('EUNSUPPORTED', 'policy diff is not implemented yet'));
}
