// `virt-offload detach --qmp SOCKET [--name NAME] [--json]`: remove the offload port (and our
// controller and chardev) from a running QEMU over its QMP socket.
import { EXIT, reportFailure } from '../exit.js';
import { printSteps, required, unplugTimeout, withQmpRoute } from './attach.js';

export async function runDetach(opts: Record<string, unknown>): Promise<number> {
  try {
    const qmpSocket = required(opts, 'qmp', '--qmp');
    const portName = typeof opts.name === 'string' ? opts.name : undefined;
    const timeout = unplugTimeout(opts.timeout);
    const result = await withQmpRoute(qmpSocket, timeout, (route) => route.detach({ vm: qmpSocket, ...(portName !== undefined ? { portName } : {}) }));
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
