// `virt-offload policy show` — not implemented yet.
import { reportFailure } from '../../exit.js';
import { VirtOffloadError } from '../../../lib/errors.js';

// eslint-disable-next-line @typescript-eslint/no-unused-vars
export async function runPolicyShow(name: string, opts: Record<string, unknown>): Promise<number> {
  return reportFailure(new VirtOffloadError('EUNSUPPORTED', 'policy show is not implemented yet'));
}
