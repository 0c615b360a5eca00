/*
 * cli.c - failing, and the allocations released before exiting.
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#endif
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* Everything to release at exit, in order of registration. */
static struct {
  void (*release)(void *);
  void *ptr;
} g_deferred[64];
static size_t g_ndeferred;

/* Parse-only mode (cli.h): where cli_fail and cli_parsed return to, and
 * the last failure's message. */
static jmp_buf *g_parse_only;
static char g_last_message[1024];

void cli_parse_only(jmp_buf *env) { g_parse_only = env; }

const char *cli_last_message(void) { return g_last_message; }

void cli_parsed(void) {
  if (g_parse_only == NULL)
    return;
  cli_cleanup();
  longjmp(*g_parse_only, CLI_PARSED);
}

void cli_cleanup(void) {
  while (g_ndeferred > 0) {
    g_ndeferred--;
    g_deferred[g_ndeferred].release(g_deferred[g_ndeferred].ptr);
  }
}

void cli_fail(int code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    snprintf(msg, sizeof msg, "error");
  for (char *c = msg; *c; c++) {
    if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
      *c = ' ';
  }
  if (g_parse_only != NULL) {
    snprintf(g_last_message, sizeof g_last_message, "%s", msg);
    cli_cleanup();
    longjmp(*g_parse_only, code);
  }
  fflush(stdout);
  fprintf(stderr, "attn: %s\n", msg);
  cli_cleanup();
  exit(code);
}

void cli_defer(void (*release)(void *), void *ptr) {
  if (g_ndeferred == sizeof g_deferred / sizeof g_deferred[0]) {
    release(ptr);
    cli_fail(CLI_EXIT_RUNTIME, "internal error: too many buffers");
  }
  g_deferred[g_ndeferred].release = release;
  g_deferred[g_ndeferred].ptr = ptr;
  g_ndeferred++;
}

void *cli_calloc(int64_t count, size_t size, const char *what) {
  if (count < 0 || (count > 0 && (uint64_t)count > SIZE_MAX / size))
    cli_fail(CLI_EXIT_RUNTIME, "%s: size overflows", what);
  size_t bytes = (size_t)count * size;
  void *p = calloc(bytes ? bytes : 1, 1);
  if (p == NULL)
    cli_fail(CLI_EXIT_RUNTIME, "%s: out of memory (%zu bytes)", what, bytes);
  cli_defer(free, p);
  return p;
}

void *cli_calloc_large(int64_t count, size_t size, const char *what) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (count < 0 || (count > 0 && (uint64_t)count > SIZE_MAX / size))
    cli_fail(CLI_EXIT_RUNTIME, "%s: size overflows", what);
  const size_t bytes = (size_t)count * size, huge = (size_t)2 << 20;
  if (bytes >= huge && bytes <= SIZE_MAX - huge) {
    const size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0)
      cli_fail(CLI_EXIT_RUNTIME, "%s: out of memory (%zu bytes)", what, bytes);
    cli_defer(free, p);
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: 4 KiB pages if not */
    memset(p, 0, rounded);
    return p;
  }
#endif
  return cli_calloc(count, size, what);
}

int64_t cli_mul(int64_t a, int64_t b, int code, const char *what) {
  if (a < 0 || b < 0 || (b != 0 && a > INT64_MAX / b))
    cli_fail(code, "%s: size overflows 64 bits", what);
  return a * b;
}
