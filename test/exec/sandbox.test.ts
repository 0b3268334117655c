// The exec helper's run() against the real bubblewrap and the real cgroups of this host, in
// this process (sandbox-suite.ts holds the tests; helper.test.ts runs them in the helper process).
import { run } from '../../lib/exec/index.js';
import { sandboxSuite } from './sandbox-suite.js';

sandboxSuite('run() in this process', () => run).run();
