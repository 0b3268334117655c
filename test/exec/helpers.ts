// Shared by the exec tests and the bench: a probe program compiled with the real gcc, and an
// "install" that writes the canonical image the way the store does (measure + onChunk), so
// the exec helper is tested against what it will really be given.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { measureFile } from '../../lib/io/index.js';
import { DEFAULT_LIMITS, type Limits } from '../../lib/policy/index.js';
import { requireTool, run } from '../../testbed/tools.js';

/** One binary, many behaviours: argv[1] picks what it does. */
export const PROBE_C = String.raw`
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/ptrace.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what) { printf("ERR %s %s\n", what, strerrorname_np(errno)); return 0; }

int main(int argc, char **argv) {
  if (argc < 2) return 64;
  const char *cmd = argv[1];
  if (!strcmp(cmd, "echo")) {
    for (int i = 2; i < argc; i++) printf("[%s]", argv[i]);
    printf("\n");
    fprintf(stderr, "to stderr\n");
    return argc > 2 ? atoi(argv[2]) : 0;
  }
  if (!strcmp(cmd, "cat")) {
    FILE *f = fopen(argv[2], "r");
    if (!f) return fail("open");
    char buf[256]; size_t n = fread(buf, 1, sizeof buf, f);
    printf("READ %zu\n", n);
    return 0;
  }
  if (!strcmp(cmd, "ls")) {
    DIR *d = opendir(argv[2]);
    if (!d) return fail("opendir");
    int n = 0; while (readdir(d)) n++;
    printf("LISTED %d\n", n);
    return 0;
  }
  if (!strcmp(cmd, "net")) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return fail("socket");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) return fail("connect");
    printf("CONNECTED\n");
    return 0;
  }
  if (!strcmp(cmd, "status")) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
      if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10)) fputs(line, stdout);
    if (f) fclose(f);
    printf("NICE %d\n", getpriority(PRIO_PROCESS, 0));
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    printf("FDS");
    while (d && (e = readdir(d))) {
      if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
      char path[64], target[256];
      snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
      ssize_t n = readlink(path, target, sizeof target - 1);
      target[n < 0 ? 0 : n] = 0;
      printf(" %s=%s", e->d_name, target);
    }
    printf("\n");
    return 0;
  }
  if (!strcmp(cmd, "forkbomb")) {
    int made = 0;
    for (int i = 0; i < 10000; i++) {
      pid_t p = fork();
      if (p == 0) { pause(); _exit(0); }
      if (p < 0) { printf("FORK FAILED after %d %s\n", made, strerrorname_np(errno)); fflush(stdout); return 0; }
      made++;
    }
    printf("FORKED %d\n", made);
    return 0;
  }
  if (!strcmp(cmd, "spin")) {
    // Two processes spin for argv[2] ms of wall time; the CPU time both used and the wall
    // time measured are printed.
    long ms = atol(argv[2]);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t child = fork();
    for (;;) {
      clock_gettime(CLOCK_MONOTONIC, &t);
      if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= ms) break;
    }
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    long cpu = (self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) * 1000
      + (self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) / 1000;
    // The wall time measured here, after the child is reaped: the quota's window.
    clock_gettime(CLOCK_MONOTONIC, &t);
    long wall = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    printf("CPU %ld WALL %ld\n", cpu, wall);
    return 0;
  }
  if (!strcmp(cmd, "memhog")) {
    long mb = atol(argv[2]);
    for (long i = 0; i < mb; i++) {
      char *p = malloc(1 << 20);
      if (!p) { printf("MALLOC FAILED at %ld\n", i); return 0; }
      memset(p, 1, 1 << 20);
    }
    printf("SURVIVED %ld MiB\n", mb);
    return 0;
  }
  if (!strcmp(cmd, "sleeper")) {
    int n = atoi(argv[3]);
    for (int i = 0; i < n; i++) if (fork() == 0) { setsid(); for (;;) sleep(100); }
    printf("SLEEPING\n"); fflush(stdout);
    for (;;) sleep(100);
  }
  if (!strcmp(cmd, "spew")) {
    long n = atol(argv[2]);
    static char buf[65536]; memset(buf, 'x', sizeof buf);
    while (n > 0) { long k = n < (long)sizeof buf ? n : (long)sizeof buf; if (write(1, buf, k) < 0) return 1; n -= k; }
    return 0;
  }
  if (!strcmp(cmd, "stdin")) {
    char buf[4096]; ssize_t n; long total = 0;
    while ((n = read(0, buf, sizeof buf)) > 0) { fwrite(buf, 1, n, stdout); total += n; }
    return 0;
  }
  if (!strcmp(cmd, "env")) {
    extern char **environ;
    for (char **e = environ; *e; e++) printf("%s\n", *e);
    return 0;
  }
  if (!strcmp(cmd, "create")) {
    FILE *f = fopen(argv[2], "w");
    if (!f) return fail("create");
    printf("CREATED\n");
    return 0;
  }
  if (!strcmp(cmd, "userns")) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) return fail("unshare");
    printf("UNSHARED\n");
    return 0;
  }
  if (!strcmp(cmd, "syscalls")) {
    /* What the seccomp filter refuses: each line is the call and its errno name (or OK). */
    struct { const char *name; long r; } calls[4];
    char params[120] = {0};
    errno = 0; calls[0].name = "ptrace"; calls[0].r = ptrace(PTRACE_TRACEME, 0, 0, 0);
    printf("ptrace %s\n", calls[0].r < 0 ? strerrorname_np(errno) : "OK");
    errno = 0; calls[1].r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
    printf("keyctl %s\n", calls[1].r < 0 ? strerrorname_np(errno) : "OK");
    errno = 0; calls[2].r = syscall(425 /* io_uring_setup */, 1, params);
    printf("io_uring_setup %s\n", calls[2].r < 0 ? strerrorname_np(errno) : "OK");
    errno = 0; calls[3].r = syscall(435 /* clone3 */, 0, 0);
    printf("clone3 %s\n", calls[3].r < 0 ? strerrorname_np(errno) : "OK");
    pid_t child = fork();
    if (child == 0) _exit(0);
    printf("fork %s\n", child > 0 ? "OK" : strerrorname_np(errno));
    if (child > 0) waitpid(child, 0, 0);
    return 0;
  }
  if (!strcmp(cmd, "kill-self")) { raise(SIGSEGV); return 0; }
  return 64;
}
`;

/** Compile the probe (dynamic, or static with `-static`) into `dir`. */
export function buildProbe(dir: string, extraFlags: readonly string[] = [], name = 'probe'): string {
  const gcc = requireTool('gcc', 'gcc');
  const src = join(dir, 'probe.c');
  writeFileSync(src, PROBE_C);
  const out = join(dir, name);
  run(gcc, ['-O1', '-g', '-o', out, src, ...extraFlags]);
  return out;
}

/** Write the canonical image of `source` to `dest` (mode 0444), as the store installs it. */
export async function install(source: string, dest: string): Promise<string> {
  const chunks: Buffer[] = [];
  const m = await measureFile(source, { onChunk: (c) => chunks.push(Buffer.from(c)) });
  writeFileSync(dest, Buffer.concat(chunks), { mode: 0o444 });
  return m.measurement;
}

export function limits(over: Partial<Limits> = {}): Limits {
  return { ...DEFAULT_LIMITS, wallMs: 10_000, ...over };
}

/** Command line of a host pid, '' if it is gone. */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}
