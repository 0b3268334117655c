// `virt-offload detach (--qmp SOCKET | --libvirt DOMAIN) [--name NAME] [--json]`: remove the
// offload port (over QMP also our controller and chardev) from a running VM.
import { EXIT, reportFailure } from '../exit.js';
import { printSteps, unplugTimeout, withRoute } from './attach.js';

export async function runDetach(opts: Record<string, unknown>): Promise<number> {
  try {
    const portName = typeof opts.name === 'string' ? opts.name : undefined;
    const timeout = unplugTimeout(opts.timeout);
    const result = await withRoute(opts, timeout, (route, vm) => route.detach({ vm, ...(portName !== undefined ? { portName } : {}) }));
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else if (result.alreadyDetached) {
      process.stdout.write(`not attached: no device or chardev of port ${result.portName}; nothing to do\n`);
    } else {
      process.stdout.write(`detached port ${result.portName} in ${result.elapsedMs} ms:\n`);
      printSteps(result.steps);
    }
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}
