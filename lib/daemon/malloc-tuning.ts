// The glibc malloc setting the daemon wants in its environment (examples/virt-offload.service
// sets it; README, section "`virt-offload serve` (the host daemon)…").
//
// Why: every run is a bwrap forked from the daemon, and fork(2) copies the page tables of the
// daemon's resident memory, so the more it holds, the later each run starts. An upload comes in
// as 64 KiB socket reads and 64 KiB frame payloads that Node frees only at V8's next
// collection. By default glibc raises its mmap threshold as large blocks are freed, so these
// end up in its main heap, which grows by tens of MB between collections and gives nothing back
// while a live chunk sits above the freed ones. With the threshold fixed at 32 KiB the heap is
// no longer grown for them: a block of 32 KiB or more that no free heap chunk fits gets a
// mapping of its own, unmapped when freed (the trim threshold stays at its 128 KiB default).
// Host view, 40 uploads of 8 MiB then 200 submits: untuned, the daemon held 114 MB and a submit
// took 6.83 ms p50 (5.60 before the uploads; bwrap's fork alone 1.9 ms instead of 1.0); tuned,
// it held 44 MB and a submit took 5.67 ms (5.69 before), for an upload 9% slower on the host
// (43.6 ms against 40.1, measure, install and run included).
// Node has no mallopt(3) to call, and glibc reads its tunables only when the process starts.

export const MALLOC_TUNABLE = 'glibc.malloc.mmap_threshold=32768';
const TUNABLE_NAME = 'glibc.malloc.mmap_threshold';
/** glibc's older spelling of the same setting; GLIBC_TUNABLES wins over it. */
const ENV_ALIAS = 'MALLOC_MMAP_THRESHOLD_';
/** The threshold must stay below the 64 KiB blocks an upload passes through (payloads of 65 512 bytes). */
const TUNED_MAX = 32 * 1024;
/** Below a page, every small allocation would be a system call. */
const TUNED_MIN = 4096;

type Env = Readonly<Record<string, string | undefined>>;

/** A number as glibc's tunables parser reads one (decimal, or 0x hex), else undefined. */
function parseSize(text: string): number | undefined {
  if (/^[0-9]+$/.test(text)) return Number(text);
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) return Number.parseInt(text.slice(2), 16);
  return undefined;
}

/**
 * The mmap threshold `env` gives glibc, in bytes: the last glibc.malloc.mmap_threshold of
 * GLIBC_TUNABLES, else MALLOC_MMAP_THRESHOLD_; undefined when neither sets it. NaN when it is
 * set to something glibc would not read as a size (`32k`, empty), or when GLIBC_TUNABLES holds
 * an entry without '=' or with two (glibc 2.36 skips such an entry; newer glibc is reported,
 * not checked here, to ignore the whole variable then): in doubt, not counted as tuned.
 */
export function mmapThreshold(env: Env): number | undefined {
  const tunables = (env.GLIBC_TUNABLES ?? '').split(':').filter((t) => t !== '');
  if (tunables.some((t) => t.indexOf('=') !== t.lastIndexOf('=') || !t.includes('='))) return Number.NaN;
  const ours = tunables.filter((t) => t.slice(0, t.indexOf('=')) === TUNABLE_NAME);
  const text = ours.length > 0 ? ours[ours.length - 1]!.slice(TUNABLE_NAME.length + 1) : env[ENV_ALIAS];
  if (text === undefined) return undefined;
  return parseSize(text) ?? Number.NaN;
}

/** Whether `env` fixes glibc's mmap threshold low enough (4 KiB to 32 KiB) for the uploads' 64 KiB blocks to leave the heap alone. */
export function mallocTuned(env: Env): boolean {
  const t = mmapThreshold(env);
  return t !== undefined && t >= TUNED_MIN && t <= TUNED_MAX;
}

/** What `serve` logs when `env` does not tune malloc (how to set it), else undefined. */
export function mallocHint(env: Env): string | undefined {
  if (mallocTuned(env)) return undefined;
  const set = mmapThreshold(env);
  const what =
    set === undefined
      ? `GLIBC_TUNABLES does not set ${TUNABLE_NAME}`
      : `glibc's mmap threshold is not fixed between 4 and 32 KiB (GLIBC_TUNABLES=${env.GLIBC_TUNABLES ?? ''}${env[ENV_ALIAS] === undefined ? '' : `, ${ENV_ALIAS}=${env[ENV_ALIAS]}`})`;
  return `${what}: after uploads every run may start ~1 ms later (each bwrap is forked from this process, and fork copies the page tables of its grown heap); set GLIBC_TUNABLES=${MALLOC_TUNABLE} in its environment, as examples/virt-offload.service does`;
}

/** `env` with MALLOC_TUNABLE added to its GLIBC_TUNABLES, unless it sets the threshold already (an operator's choice stands). */
export function withMallocTuning(env: Env): Record<string, string | undefined> {
  if (mmapThreshold(env) !== undefined) return { ...env };
  const current = env.GLIBC_TUNABLES;
  return { ...env, GLIBC_TUNABLES: current === undefined || current === '' ? MALLOC_TUNABLE : `${current}:${MALLOC_TUNABLE}` };
}

/** `env` without anything that sets glibc's malloc (GLIBC_TUNABLES, MALLOC_*_): how the daemon runs untuned. */
export function withoutMallocTuning(env: Env): Record<string, string | undefined> {
  const out = { ...env };
  delete out.GLIBC_TUNABLES;
  for (const name of Object.keys(out)) if (/^MALLOC_[A-Z_]+_$/.test(name)) delete out[name];
  return out;
}
