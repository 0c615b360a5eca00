/*
 * cli.h - what every file of the `attn` command line shares: exit codes,
 * the one way to fail, tracked allocations, and the command table.
 *
 * Exit status: 0 success; 2 usage error (unknown flag, missing value,
 * unparsable number, out-of-range flag value, conflicting flags, the same
 * file given twice); 1 runtime error (a file cannot be read or written, bad
 * file contents, the library returns an error status). On any error,
 * exactly one line "attn: <reason>" on stderr and nothing else there.
 */
#ifndef ATTN_CLI_H
#define ATTN_CLI_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_EXIT_RUNTIME 1
#define CLI_EXIT_USAGE 2

/* Most worker threads a flag accepts: the library's per-call maximum. */
#define CLI_MAX_THREADS 256

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* Prints "attn: <reason>" as one line (control characters blanked),
 * releases everything tracked, and exits with code. */
CLI_PRINTF(2, 3) _Noreturn void cli_fail(int code, const char *fmt, ...);

/* A zeroed block of count elements of size bytes, freed at exit (or by
 * cli_cleanup); fails (runtime) on overflow or out of memory. */
void *cli_calloc(int64_t count, size_t size, const char *what);
/* cli_calloc for a large buffer read as a stream (a KV cache): 2 MiB
 * aligned and, on Linux, advised to use transparent huge pages, so that
 * streaming it costs no TLB miss per 4 KiB page. */
void *cli_calloc_large(int64_t count, size_t size, const char *what);

/* Runs release(ptr) at cli_cleanup, in reverse order of registration. */
void cli_defer(void (*release)(void *), void *ptr);

/* Releases everything tracked. */
void cli_cleanup(void);

/* Parse-only mode, for the argument fuzzer (fuzz/cli_fuzz.c) and nothing
 * else: while env is set (NULL: off, the default), cli_fail keeps its
 * message (cli_last_message) and longjmps to *env with its exit code
 * instead of printing and exiting, and cli_parsed longjmps there with
 * CLI_PARSED; both release everything tracked first. */
#define CLI_PARSED 100
void cli_parse_only(jmp_buf *env);
const char *cli_last_message(void);
/* Called by each command once its options are parsed and checked, before
 * it reads a file, allocates its operands or computes: does nothing
 * outside parse-only mode. */
void cli_parsed(void);

/* a * b for a, b >= 0, or cli_fail(code) naming what on overflow. */
int64_t cli_mul(int64_t a, int64_t b, int code, const char *what);

/* One command of the table in main.c. */
typedef struct cli_command {
  const char *name;
  const char *help; /* its part of `attn --help`, beside its parser */
  int (*main)(int argc, char **argv); /* argv[1] is the command's name */
} cli_command;

/* Prints the whole `attn --help` text to stdout (main.c). */
void cli_print_help(void);

extern const char cmd_run_help[];
extern const char cmd_grad_help[];
extern const char cmd_bench_help[];
extern const char cmd_peak_help[];
int cmd_run(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_peak(int argc, char **argv);

#endif /* ATTN_CLI_H */
