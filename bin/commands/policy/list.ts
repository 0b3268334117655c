// `virt-offload policy list` — not implemented yet.
import { reportFailure } from '../../exit.js';
import { VirtOffloadError } from '../../../lib/errors.js';

// eslint-disable-next-line @typescript-eslint/no-unused-vars
export async function runPolicyList(opts: Record<string, unknown>): Promise<number> {
  return reportFailure(new VirtOffloadError('EUNSUPPORTED', 'policy list is not implemented yet'));
}
