// `virt-offload policy revoke` — not implemented yet.
import { reportFailure } from '../../exit.js';
import { VirtOffloadError } from '../../../lib/errors.js';

// eslint-disable-next-line @typescript-eslint/no-unused-vars
export async function runPolicyRevoke(name: string, opts: Record<string, unknown>): Promise<number> {
  return reportFailure(new VirtOffloadError('EUNSUPPORTED', 'policy revoke is not implemented yet'));
}
