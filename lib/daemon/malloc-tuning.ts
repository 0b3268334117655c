// The glibc malloc setting the daemon wants in its environment (examples/virt-offload.service
// sets it; README, "Running the daemon").
//
// Why: every run is a bwrap forked from the daemon, and fork(2) copies the page tables of the
// daemon's resident memory, so the more it holds, the later each run starts. An upload comes in
// as 64 KiB socket reads and 64 KiB frame payloads that Node frees only at V8's next
// collection; glibc serves these from its main heap, which grows by tens of MB between
// collections and gives nothing back while a live chunk sits above the freed ones. Allocations
// of 32 KiB and more mapped on their own (fixing the threshold also stops glibc raising it) go
// back to the kernel when freed. Host view, 40 uploads of 8 MiB then 200 submits: untuned, the
// daemon held 114 MB and a submit took 6.83 ms p50 (5.60 before the uploads; bwrap's fork alone
// 1.9 ms instead of 1.0); tuned, it held 44 MB and a submit took 5.67 ms (5.69 before), for an
// upload 9% slower on the host (43.6 ms against 40.1, measure, install and run included).
// Node has no mallopt(3) to call, and glibc reads GLIBC_TUNABLES only when the process starts.

export const MALLOC_TUNABLE = 'glibc.malloc.mmap_threshold=32768';
const TUNABLE_NAME = MALLOC_TUNABLE.slice(0, MALLOC_TUNABLE.indexOf('=') + 1);

/** Whether `env` sets glibc's mmap threshold (to any value: an operator's own choice stands). */
export function mallocTuned(env: Readonly<Record<string, string | undefined>>): boolean {
  return (env.GLIBC_TUNABLES ?? '').split(':').some((t) => t.startsWith(TUNABLE_NAME));
}

/** `env` with MALLOC_TUNABLE added to its GLIBC_TUNABLES (kept as is when it sets the threshold already). */
export function withMallocTuning(env: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  if (mallocTuned(env)) return { ...env };
  const current = env.GLIBC_TUNABLES;
  return { ...env, GLIBC_TUNABLES: current === undefined || current === '' ? MALLOC_TUNABLE : `${current}:${MALLOC_TUNABLE}` };
}
