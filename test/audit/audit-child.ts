// Child process for the concurrency test: append N records tagged with this writer's id.
import { openAuditLog } from '../../lib/audit/index.js';

const [path, writer, count] = process.argv.slice(2);
const log = openAuditLog(path!);
for (let i = 0; i < Number(count); i++) log.append({ action: 'test', writer: writer!, seq: i, padding: 'x'.repeat(500) });
log.close();
