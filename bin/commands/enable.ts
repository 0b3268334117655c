// `virt-offload enable DOMAIN [--required] [--port NAME] [--json]`: make a libvirt domain ready
// for the offload port: a virtio-serial controller in its persistent definition (libvirt cannot
// hot-plug one) and our <vo:offload> opt-in (hooks/README.md, "Domain metadata").
import { UsageError } from '../../lib/errors.js';
import { DEFAULT_PORT_NAME, offloadIds } from '../../lib/hotplug/index.js';
import { enableOffload, LibvirtConnection } from '../../lib/libvirt/index.js';
import { EXIT, reportFailure } from '../exit.js';

export async function runEnable(domain: string, opts: Record<string, unknown>): Promise<number> {
  try {
    if (domain === '') throw new UsageError('DOMAIN is required', 'DOMAIN');
    const port = typeof opts.port === 'string' ? opts.port : DEFAULT_PORT_NAME;
    offloadIds(port); // checks the port name
    const connection = await LibvirtConnection.connect();
    let result;
    try {
      result = await enableOffload(connection, domain, { enabled: true, required: opts.required === true, port });
    } finally {
      connection.close();
    }
    if (opts.json === true) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return EXIT.ok;
    }
    const meta = `<vo:offload enabled="yes" required="${result.metadata.required ? 'yes' : 'no'}" port="${result.metadata.port}"/>`;
    if (result.unchanged) {
      process.stdout.write(`domain ${domain} is already enabled (virtio-serial controller and ${meta}); nothing to do\n`);
    } else {
      if (result.controllerAdded) process.stdout.write(`domain ${domain}: added a virtio-serial controller to the persistent definition\n`);
      if (result.metadataChanged) process.stdout.write(`domain ${domain}: set ${meta} in the persistent definition\n`);
    }
    if (result.running && !result.liveController) {
      process.stdout.write(`domain ${domain} is running without a virtio-serial controller: the controller takes effect at its next boot (shut it down and start it again; a reboot from inside the guest is not enough)\n`);
    } else if (result.running && result.metadataChanged) {
      process.stdout.write(`domain ${domain} is running: the metadata is read by the hook at its next start; \`virt-offload attach --libvirt ${domain}\` works now\n`);
    }
    return EXIT.ok;
  } catch (err) {
    return reportFailure(err);
  }
}
