// The seccomp filter bwrap installs (--seccomp FD) right before it executes the program: the
// system calls a sandboxed program has no business making fail with EPERM. What they have in
// common is kernel surface far beyond what a command-line program needs, and a history of
// privilege escalations and sandbox escapes (the list follows Docker's and Flatpak's defaults):
// new namespaces and mounts, BPF, perf events, userfaultfd, io_uring, keyrings, ptrace and
// cross-process memory access, module and kexec loading, file handles (open_by_handle_at
// escaped early Docker), and the x32 and 32-bit entry points, which a filter for x86-64 numbers
// would not see. clone3 answers ENOSYS, not EPERM: its flags live in memory a filter cannot
// read, and ENOSYS makes the C library fall back to clone, whose flags it can.
//
// The program is classic BPF for x86-64 (seccomp_data: nr at 0, arch at 4, args[0] at 16, all
// little-endian). On another architecture seccompFilter() returns undefined and runs go without
// a filter (the other layers stay); the numbers below are x86-64's.

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME. */
const CLONE_NEW_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080;

const SYS_CLONE = 56;
const SYS_CLONE3 = 435;

/** x86-64 system call numbers refused with EPERM, by name. */
export const REFUSED_SYSCALLS: Readonly<Record<string, number>> = Object.freeze({
  // namespaces and mounts
  unshare: 272,
  setns: 308,
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  chroot: 161,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  // kernel attack surface
  bpf: 321,
  perf_event_open: 298,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  // other processes
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  // the host's kernel and devices
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  kexec_load: 246,
  kexec_file_load: 320,
  open_by_handle_at: 304,
  name_to_handle_at: 303,
  iopl: 172,
  ioperm: 173,
  acct: 163,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  syslog: 103,
  quotactl: 179,
  vhangup: 153,
  uselib: 134,
  settimeofday: 164,
  clock_settime: 227,
  // adjtimex and clock_adjtime stay allowed: with no mode bits they only read the clock's
  // state (time-keeping tools do), and setting it needs CAP_SYS_TIME, which no run has.
});

// Classic BPF opcodes.
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;

interface Insn {
  readonly code: number;
  readonly k: number;
  /** Jump targets by label, resolved to offsets once the program is laid out. */
  readonly jt?: string;
  readonly jf?: string;
  readonly label?: string;
}

let compiled: Uint8Array | undefined;

/**
 * The compiled filter (struct sock_filter[], 8 bytes each), or undefined off x86-64. Built
 * once per process: it depends on nothing but the architecture, and every run writes it.
 */
export function seccompFilter(arch: string = process.arch): Uint8Array | undefined {
  if (arch !== 'x64') return undefined;
  compiled ??= compileFilter();
  return compiled;
}

function compileFilter(): Uint8Array {
  const p: Insn[] = [
    { code: LD_W_ABS, k: 4 },
    { code: JEQ_K, k: AUDIT_ARCH_X86_64, jf: 'deny' },
    { code: LD_W_ABS, k: 0 },
    { code: JGE_K, k: X32_SYSCALL_BIT, jt: 'deny' },
    { code: JEQ_K, k: SYS_CLONE3, jt: 'nosys' },
    { code: JEQ_K, k: SYS_CLONE, jt: 'clone' },
    ...Object.values(REFUSED_SYSCALLS).map((nr): Insn => ({ code: JEQ_K, k: nr, jt: 'deny' })),
    { code: RET_K, k: RET_ALLOW },
    // clone: refused only with a flag that makes a namespace (args[0], low 32 bits).
    { code: LD_W_ABS, k: 16, label: 'clone' },
    { code: JSET_K, k: CLONE_NEW_FLAGS, jt: 'deny' },
    { code: RET_K, k: RET_ALLOW },
    { code: RET_K, k: RET_ERRNO | ENOSYS, label: 'nosys' },
    { code: RET_K, k: RET_ERRNO | EPERM, label: 'deny' },
  ];
  const at = new Map<string, number>();
  p.forEach((insn, i) => insn.label !== undefined && at.set(insn.label, i));
  const out = new Uint8Array(p.length * 8);
  const view = new DataView(out.buffer);
  p.forEach((insn, i) => {
    const offset = (label: string | undefined): number => {
      if (label === undefined) return 0;
      const d = at.get(label)! - (i + 1);
      if (!(d >= 0 && d <= 255)) throw new RangeError(`seccomp filter: jump from ${i} to ${label} is ${d}`);
      return d;
    };
    view.setUint16(i * 8, insn.code, true);
    view.setUint8(i * 8 + 2, offset(insn.jt));
    view.setUint8(i * 8 + 3, offset(insn.jf));
    view.setUint32(i * 8 + 4, insn.k, true);
  });
  return out;
}
