/*
 * args.c - see args.h.
 */
#include "args.h"

#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

args args_start(int argc, char **argv) {
  args a;
  memset(&a, 0, sizeof a);
  a.argc = argc;
  a.argv = argv;
  a.i = 1;
  return a;
}

int args_next(args *a) {
  if (++a->i >= a->argc)
    return 0;
  const char *s = a->argv[a->i];
  if (strncmp(s, "--", 2) != 0 || s[2] == '\0')
    cli_fail(CLI_EXIT_USAGE, "unexpected argument '%s' (try attn --help)", s);
  const char *eq = strchr(s, '=');
  size_t n = eq ? (size_t)(eq - s) : strlen(s);
  if (n >= sizeof a->name)
    cli_fail(CLI_EXIT_USAGE, "unknown option '%.40s...'", s);
  memcpy(a->name, s, n);
  a->name[n] = '\0';
  a->inl = eq ? eq + 1 : NULL;
  return 1;
}

int args_is(const args *a, const char *name) {
  return strcmp(a->name, name) == 0;
}

const char *args_value(args *a) {
  if (a->inl != NULL) {
    if (a->inl[0] == '\0')
      cli_fail(CLI_EXIT_USAGE, "option %s requires a value", a->name);
    return a->inl;
  }
  if (a->i + 1 >= a->argc || strncmp(a->argv[a->i + 1], "--", 2) == 0 ||
      a->argv[a->i + 1][0] == '\0')
    cli_fail(CLI_EXIT_USAGE, "option %s requires a value", a->name);
  return a->argv[++a->i];
}

void args_flag(const args *a) {
  if (a->inl != NULL)
    cli_fail(CLI_EXIT_USAGE, "option %s takes no value", a->name);
}

void args_unknown(const args *a, const char *cmd) {
  cli_fail(CLI_EXIT_USAGE,
           "unknown option '%s' for 'attn %s' (try attn --help)", a->name, cmd);
}

void args_set_once(const char **slot, const char *value, const char *opt) {
  if (*slot != NULL)
    cli_fail(CLI_EXIT_USAGE, "option %s given more than once", opt);
  *slot = value;
}

long long args_int(const char *opt, const char *s, long long lo, long long hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0)
    cli_fail(CLI_EXIT_USAGE, "%s: '%s' is not an integer", opt, s);
  if (v < lo || v > hi)
    cli_fail(CLI_EXIT_USAGE, "%s: %lld is out of range [%lld, %lld]", opt, v,
             lo, hi);
  return v;
}

double args_real(const char *opt, const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0')
    cli_fail(CLI_EXIT_USAGE, "%s: '%s' is not a number", opt, s);
  if (!isfinite(v) || errno == ERANGE)
    cli_fail(CLI_EXIT_USAGE, "%s: '%s' is not a finite number", opt, s);
  return v;
}

int args_threads(const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0)
    cli_fail(CLI_EXIT_USAGE, "--threads: '%s' is not an integer", s);
  if (v < 0 || v > CLI_MAX_THREADS)
    cli_fail(CLI_EXIT_USAGE,
             "--threads: %lld is out of range: 0 (all CPUs) or 1 to %d "
             "threads",
             v, CLI_MAX_THREADS);
  return (int)v;
}

attn_isa args_isa(const char *opt, const char *s) {
  attn_isa isa;
  if (attn_isa_parse(s, &isa) != ATTN_OK)
    cli_fail(
        CLI_EXIT_USAGE,
        "%s: unknown ISA '%s' (expected generic, avx2, avx512, avx512bf16, "
        "amxbf16 or auto)",
        opt, s);
  return isa;
}

attn_dtype args_dtype(const char *opt, const char *s) {
  if (strcmp(s, "f32") == 0)
    return ATTN_DTYPE_F32;
  if (strcmp(s, "bf16") == 0)
    return ATTN_DTYPE_BF16;
  if (strcmp(s, "f16") == 0)
    return ATTN_DTYPE_F16;
  cli_fail(CLI_EXIT_USAGE, "%s: unknown dtype '%s' (expected f32, bf16 or f16)",
           opt, s);
}

const char *args_dtype_name(attn_dtype d) {
  return d == ATTN_DTYPE_BF16   ? "bf16"
         : d == ATTN_DTYPE_F16  ? "f16"
         : d == ATTN_DTYPE_Q8_0 ? "q8_0"
         : d == ATTN_DTYPE_Q4_0 ? "q4_0"
                                : "f32";
}

attn_dtype args_quant(const char *opt, const char *s) {
  if (strcmp(s, "q8_0") == 0)
    return ATTN_DTYPE_Q8_0;
  if (strcmp(s, "q4_0") == 0)
    return ATTN_DTYPE_Q4_0;
  cli_fail(CLI_EXIT_USAGE,
           "%s: unknown quantisation '%s' (expected q8_0 or q4_0)", opt, s);
}
