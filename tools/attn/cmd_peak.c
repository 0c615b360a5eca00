/*
 * cmd_peak.c - `attn peak`: this machine's measured f32 FMA peak (the
 * target of long sequences) and memory read bandwidth (the target of
 * decoding), each for about --seconds.
 */
#include "args.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

const char cmd_peak_help[] =
    "attn peak [--threads N] [--seconds S (1.0)] [--json]\n"
    "    measured f32 FMA peak in GFLOP/s, the bf16 dot-product peak where\n"
    "    the CPU has one (AMX tiles on amxbf16, else AVX512-BF16's\n"
    "    vdpbf16ps), and memory read bandwidth in GB/s (1e9 bytes/s; a\n"
    "    prefetching reader of a buffer of 8x the last-level cache, 256 MiB\n"
    "    to 1 GiB)\n";

typedef struct peak_opts {
  int threads, json;
  double seconds;
} peak_opts;

static void parse(int argc, char **argv, peak_opts *o) {
  args a = args_start(argc, argv);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      cli_print_help();
      exit(0);
    } else if (args_is(&a, "--threads")) {
      o->threads = args_threads(args_value(&a));
    } else if (args_is(&a, "--seconds")) {
      o->seconds = args_real("--seconds", args_value(&a));
      if (o->seconds <= 0 || o->seconds > 3600)
        cli_fail(CLI_EXIT_USAGE, "--seconds: must be in (0, 3600]");
    } else if (args_is(&a, "--json")) {
      args_flag(&a);
      o->json = 1;
    } else {
      args_unknown(&a, "peak");
    }
  }
}

int cmd_peak(int argc, char **argv) {
  peak_opts o = {.threads = 0, .json = 0, .seconds = 1.0};
  parse(argc, argv, &o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  double g = 0.0;
  attn_status st = attn_fma_peak_gflops(o.threads, o.seconds, &g);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "measuring the FMA peak: %s", attn_strerror(st));
  double g16 = 0.0; /* stays 0 where the CPU has no bf16 dot product */
  st = attn_bf16_peak_gflops(o.threads, o.seconds, &g16);
  if (st != ATTN_OK && st != ATTN_ERR_UNSUPPORTED_ISA)
    cli_fail(CLI_EXIT_RUNTIME, "measuring the bf16 peak: %s",
             attn_strerror(st));
  double bw = 0.0;
  st = attn_read_bandwidth_gbps(o.threads, o.seconds, &bw);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "measuring the read bandwidth: %s",
             attn_strerror(st));
  const char *isa = attn_isa_name(attn_isa_best());
  if (o.json) {
    printf("{\"command\":\"peak\",\"threads\":%d,\"seconds\":%.3f,"
           "\"isa\":\"%s\",\"peak_gflops\":%.3f,\"bf16_peak_gflops\":%.3f,"
           "\"read_gbps\":%.3f}\n",
           o.threads, o.seconds, isa ? isa : "?", g, g16, bw);
  } else {
    char thr[32];
    if (o.threads == 0)
      snprintf(thr, sizeof thr, "all");
    else
      snprintf(thr, sizeof thr, "%d", o.threads);
    printf("peak: %.1f GFLOP/s (f32 FMA, threads %s, isa %s)\n", g, thr,
           isa ? isa : "?");
    if (g16 > 0)
      printf("bf16 peak: %.1f GFLOP/s (%s, threads %s)\n", g16,
             attn_isa_supported(ATTN_ISA_AMX_BF16) ? "AMX tdpbf16ps"
                                                   : "vdpbf16ps",
             thr);
    printf("read bandwidth: %.1f GB/s (median pass, threads %s)\n", bw, thr);
  }
  return 0;
}
