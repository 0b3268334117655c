// Preloaded by scripts/test-files.mjs (node --import): makes uvu 0.5 report an error thrown by
// a suite's before hook as a failure, with its message and stack, instead of dropping it.
// uvu's runner runs the before hooks inside a try whose finally block returns, which discards
// the error (the suite prints "(0 / N)" and the process exits 0). This rewrites that one line
// of uvu's ESM build as Node loads it; if the line is not there (uvu changed), the run stops
// and says so rather than test without the fix.
import { register } from 'node:module';

register(
  'data:text/javascript,' +
    encodeURIComponent(`
const BEFORE = 'for (hook of before) await hook(state);';
const REPORTED = "try { for (hook of before) await hook(state); } catch (err) { errors += format('(before hook)', err, name); write(FAIL); throw err; }";
export async function load(url, context, next) {
  const result = await next(url, context);
  if (!url.endsWith('/node_modules/uvu/dist/index.mjs')) return result;
  const source = String(result.source);
  if (!source.includes(BEFORE)) throw new Error('scripts/uvu-hook-errors.mjs: uvu/dist/index.mjs no longer has the line it rewrites; check how this uvu reports a before hook that throws');
  return { ...result, source: source.replace(BEFORE, REPORTED) };
}
`),
  import.meta.url,
);
