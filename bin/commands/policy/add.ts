// `virt-offload policy add` — not implemented yet.
import { reportFailure } from '../../exit.js';
import { VirtOffloadError } from '../../../lib/errors.js';

// eslint-disable-next-line @typescript-eslint/no-unused-vars
export async function runPolicyAdd(file: string, opts: Record<string, unknown>): Promise<number> {
  return reportFailure(new VirtOffloadError('EUNSUPPORTED', 'policy add is not implemented yet'));
}
