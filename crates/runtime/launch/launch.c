/*
 * khachapuri-launch: the first program of a warm `process` sandbox.
 *
 * bubblewrap fixes a sandbox's environment when it starts, but a CGI program's
 * environment is its request. So a sandbox started ahead of its request runs this
 * instead of the program: it blocks reading stdin, where the node writes one request's
 * environment (a little-endian u32 length, then `NAME=VALUE` entries each ending in NUL),
 * and then replaces itself with /app/main, whose stdin continues with the request body.
 *
 * Freestanding (no libc, raw system calls, a few KiB): the sandbox has an empty root, so
 * nothing could load a dynamically linked launcher, and it must not depend on the host.
 * Exit codes 120-123 are the launcher's own failures (the node reports them as such).
 */
#define SYS_read 0
#define SYS_execve 59
#define SYS_exit 60
#define EINTR 4

#define MAX_ENV_BYTES (1 << 20)
#define MAX_VARS 8192

static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static void die(int code) {
  for (;;) sys3(SYS_exit, code, 0, 0);
}

static char block[MAX_ENV_BYTES + 1];
static char *envp[MAX_VARS + 1];

/* Reads exactly n bytes from stdin; never more, so the body stays for the program. */
static void read_exact(char *p, long n) {
  while (n > 0) {
    long r = sys3(SYS_read, 0, (long)p, n);
    if (r == -EINTR) continue;
    if (r <= 0) die(120); /* the node went away before sending a request */
    p += r;
    n -= r;
  }
}

void launch_main(void) {
  unsigned char len[4];
  read_exact((char *)len, 4);
  unsigned long n = (unsigned long)len[0] | (unsigned long)len[1] << 8 |
                    (unsigned long)len[2] << 16 | (unsigned long)len[3] << 24;
  if (n > MAX_ENV_BYTES) die(121);
  read_exact(block, (long)n);
  block[n] = 0;
  long k = 0;
  char *p = block, *end = block + n;
  while (p < end) {
    if (k == MAX_VARS) die(122);
    envp[k++] = p;
    while (p < end && *p) p++;
    p++;
  }
  envp[k] = 0;
  static char path[] = "/app/main";
  char *argv[2];
  argv[0] = path;
  argv[1] = 0;
  sys3(SYS_execve, (long)path, (long)argv, (long)envp);
  die(123); /* execve failed: no /app/main, or not executable */
}

__asm__(".text\n.globl _start\n_start:\n"
        "  xor %rbp, %rbp\n"
        "  and $-16, %rsp\n"
        "  call launch_main\n"
        "  hlt\n");
