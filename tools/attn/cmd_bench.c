/*
 * cmd_bench.c - `attn bench`: times attn_forward on pseudo-random data and
 * checks sampled rows against a double-precision reference.
 */
#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

const char cmd_bench_help[] =
    "attn bench [options]      time attn_forward on pseudo-random data\n"
    "  --batch B (1) --heads H (8) --kv-heads HK (= heads) --seq N (4096,\n"
    "  both) --seq-q N --seq-k N --dim D (64) --dim-v DV (= dim) --causal\n"
    "  --dtype f32|bf16|f16 --out-dtype f32|bf16|f16 (f32) --threads N (0 = "
    "all, at most 256) --isa ISA\n"
    "  --repeat R (5) --warmup W (1) --check / --no-check (check is on by\n"
    "  default) --peak GFLOPS (default: measured in the same run) --json\n";

typedef struct bench_opts {
  int64_t batch, heads, kv_heads, seq, seq_q, seq_k, dim, dim_v;
  int64_t repeat, warmup;
  int threads, causal, check, json;
  attn_dtype dt, out_dt;
  attn_isa isa;
  double peak; /* 0 = measure */
} bench_opts;

/* The problem and what the run measured. */
typedef struct bench_run {
  void *q, *k, *v;
  void *out;
  attn_params p;
  attn_isa used_isa;
  double rss_base, rss_after, *times, median, gflops, share;
  int peak_measured, rows, check_ok;
  double max_err;
} bench_run;

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */
/* ---------------------------------------------------------------------- */

/* The integer options; returns 1 if the current one was one of them. */
static int take_int(bench_opts *b, args *a) {
  const int64_t big = (int64_t)1 << 40;
  const struct {
    const char *name;
    int64_t *var;
    int64_t lo, hi;
  } ints[] = {
      {"--batch", &b->batch, 1, big},
      {"--heads", &b->heads, 1, big},
      {"--kv-heads", &b->kv_heads, 1, big},
      {"--seq", &b->seq, 1, big},
      {"--seq-q", &b->seq_q, 1, big},
      {"--seq-k", &b->seq_k, 1, big},
      {"--dim", &b->dim, 1, big},
      {"--dim-v", &b->dim_v, 1, big},
      {"--repeat", &b->repeat, 1, 1000000},
      {"--warmup", &b->warmup, 0, 1000000},
  };
  for (size_t t = 0; t < sizeof ints / sizeof ints[0]; t++) {
    if (args_is(a, ints[t].name)) {
      *ints[t].var = args_int(a->name, args_value(a), ints[t].lo, ints[t].hi);
      return 1;
    }
  }
  return 0;
}

/* The flags without a value; returns 1 if the current one was one. */
static int take_flag(bench_opts *b, args *a) {
  const struct {
    const char *name;
    int *var;
    int value;
  } flags[] = {
      {"--causal", &b->causal, 1},
      {"--check", &b->check, 1},
      {"--no-check", &b->check, 0},
      {"--json", &b->json, 1},
  };
  for (size_t t = 0; t < sizeof flags / sizeof flags[0]; t++) {
    if (args_is(a, flags[t].name)) {
      args_flag(a);
      *flags[t].var = flags[t].value;
      return 1;
    }
  }
  return 0;
}

static void parse(int argc, char **argv, bench_opts *b) {
  args a = args_start(argc, argv);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      cli_print_help();
      exit(0);
    } else if (take_int(b, &a) || take_flag(b, &a)) {
      continue;
    } else if (args_is(&a, "--threads")) {
      b->threads = args_threads(args_value(&a));
    } else if (args_is(&a, "--dtype")) {
      b->dt = args_dtype("--dtype", args_value(&a));
    } else if (args_is(&a, "--out-dtype")) {
      b->out_dt = args_dtype("--out-dtype", args_value(&a));
    } else if (args_is(&a, "--isa")) {
      b->isa = args_isa("--isa", args_value(&a));
    } else if (args_is(&a, "--peak")) {
      b->peak = args_real("--peak", args_value(&a));
      if (b->peak <= 0)
        cli_fail(CLI_EXIT_USAGE, "--peak: must be positive");
    } else {
      args_unknown(&a, "bench");
    }
  }
}

/* Defaults that depend on other options, and their consistency. */
static void resolve(bench_opts *b) {
  if (b->kv_heads > 0 && b->heads % b->kv_heads != 0)
    cli_fail(CLI_EXIT_USAGE,
             "--heads (%lld) must be a multiple of --kv-heads (%lld)",
             (long long)b->heads, (long long)b->kv_heads);
  if (b->kv_heads < 0)
    b->kv_heads = b->heads;
  if (b->seq_q < 0)
    b->seq_q = b->seq > 0 ? b->seq : 4096;
  if (b->seq_k < 0)
    b->seq_k = b->seq > 0 ? b->seq : 4096;
  if (b->dim_v < 0)
    b->dim_v = b->dim;
}

/* ---------------------------------------------------------------------- */
/* Data                                                                   */
/* ---------------------------------------------------------------------- */

/* xorshift64*, uniform in [-1, 1). */
static float rand_unit(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  uint64_t r = x * 0x2545F4914F6CDD1DULL;
  return (float)((double)(r >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* count random values, rounded to dt and stored in dt. */
static void *make_input(int64_t count, attn_dtype dt, uint64_t seed,
                        const char *what) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  if (dt == ATTN_DTYPE_F32) {
    float *f = cli_calloc(count, sizeof(float), what);
    for (int64_t i = 0; i < count; i++)
      f[i] = rand_unit(&s);
    return f;
  }
  uint16_t *h = cli_calloc(count, sizeof(uint16_t), what);
  for (int64_t i = 0; i < count; i++) {
    float f = rand_unit(&s);
    h[i] = dt == ATTN_DTYPE_BF16 ? attn_f32_to_bf16(f) : attn_f32_to_f16(f);
  }
  return h;
}

/* Peak resident set size so far, MiB. On Linux VmHWM from /proc: unlike
 * ru_maxrss it is not inherited across exec from a large parent. */
static double maxrss_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f) {
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
        break;
    fclose(f);
    if (kib >= 0)
      return (double)kib / 1024.0;
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0.0;
  return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* b*s*h*d elements, or a runtime failure naming what. */
static int64_t count4(int64_t b, int64_t s, int64_t h, int64_t d,
                      const char *what) {
  const int c = CLI_EXIT_RUNTIME;
  return cli_mul(cli_mul(cli_mul(b, s, c, what), h, c, what), d, c, what);
}

/* Random Q, K, V, a zeroed O and the parameters, checked. */
static void setup(const bench_opts *b, bench_run *r) {
  if (!attn_isa_supported(b->isa))
    cli_fail(CLI_EXIT_RUNTIME, "ISA %s is not supported on this CPU",
             attn_isa_name(b->isa));
  r->used_isa = b->isa == ATTN_ISA_AUTO ? attn_context_isa(NULL) : b->isa;
  int64_t nq = count4(b->batch, b->seq_q, b->heads, b->dim, "Q");
  int64_t nk = count4(b->batch, b->seq_k, b->kv_heads, b->dim, "K");
  int64_t nv = count4(b->batch, b->seq_k, b->kv_heads, b->dim_v, "V");
  int64_t no = count4(b->batch, b->seq_q, b->heads, b->dim_v, "O");
  r->q = make_input(nq, b->dt, 1, "Q");
  r->k = make_input(nk, b->dt, 2, "K");
  r->v = make_input(nv, b->dt, 3, "V");
  const size_t osz = b->out_dt == ATTN_DTYPE_F32 ? sizeof(float) : 2;
  r->out = cli_calloc(no, osz, "O");
  memset(r->out, 0, (size_t)no * osz); /* touch every page */
  r->rss_base = maxrss_mib();

  attn_params *p = &r->p;
  attn_params_init(p);
  p->q = attn_tensor_bshd(r->q, b->dt, b->batch, b->seq_q, b->heads, b->dim);
  p->k = attn_tensor_bshd(r->k, b->dt, b->batch, b->seq_k, b->kv_heads, b->dim);
  p->v =
      attn_tensor_bshd(r->v, b->dt, b->batch, b->seq_k, b->kv_heads, b->dim_v);
  p->o = attn_tensor_bshd(r->out, b->out_dt, b->batch, b->seq_q, b->heads,
                          b->dim_v);
  p->causal = b->causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  p->num_threads = b->threads;
  p->isa = b->isa;
}

/* ---------------------------------------------------------------------- */
/* Timing                                                                 */
/* ---------------------------------------------------------------------- */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The peak (given or measured), warm-up and timed runs, their median. */
static void time_runs(const bench_opts *b, bench_run *r, double *peak) {
  char msg[512] = {0};
  r->p.error_message = msg;
  r->p.error_message_size = sizeof msg;
  attn_status st = attn_forward_check(&r->p);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  *peak = b->peak;
  if (*peak == 0.0) {
    st = attn_fma_peak_gflops(b->threads, 0.5, peak);
    if (st != ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "measuring the FMA peak: %s",
               attn_strerror(st));
    r->peak_measured = 1;
  }
  r->times = cli_calloc(b->repeat, sizeof(double), "timings");
  for (int64_t i = 0; i < b->warmup + b->repeat; i++) {
    double t0 = now_seconds();
    st = attn_forward(NULL, &r->p);
    double t1 = now_seconds();
    if (st != ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
    if (i >= b->warmup)
      r->times[i - b->warmup] = t1 - t0;
  }
  r->p.error_message = NULL;
  r->p.error_message_size = 0;
  r->rss_after = maxrss_mib();
  int64_t n = b->repeat;
  qsort(r->times, (size_t)n, sizeof(double), cmp_double);
  r->median =
      n % 2 ? r->times[n / 2] : 0.5 * (r->times[n / 2 - 1] + r->times[n / 2]);
  double flops = 2.0 * (double)b->batch * (double)b->heads * (double)b->seq_q *
                 (double)b->seq_k * (double)(b->dim + b->dim_v);
  if (b->causal)
    flops *= 0.5;
  r->gflops = r->median > 0 ? flops / r->median * 1e-9 : 0.0;
  r->share = *peak > 0 ? r->gflops / *peak : 0.0;
}

/* ---------------------------------------------------------------------- */
/* Check: sampled rows against a double-precision naive computation       */
/* ---------------------------------------------------------------------- */

static double load_elem(const void *base, attn_dtype dt, int64_t idx) {
  if (dt == ATTN_DTYPE_F32)
    return ((const float *)base)[idx];
  uint16_t h = ((const uint16_t *)base)[idx];
  return dt == ATTN_DTYPE_BF16 ? attn_bf16_to_f32(h) : attn_f16_to_f32(h);
}

/* Max |O - reference| over row i of query head h of batch b; w (seq_k)
 * and acc (dim_v) are scratch. */
static double row_error(const bench_opts *o, const bench_run *r, int64_t b,
                        int64_t h, int64_t i, double *w, double *acc) {
  const int64_t g = h / (o->heads / o->kv_heads), dim = o->dim;
  const int64_t dv = o->dim_v, hk = o->kv_heads;
  const double scale = 1.0 / sqrt((double)dim);
  int64_t jmax = o->causal ? i + o->seq_k - o->seq_q : o->seq_k - 1;
  if (jmax > o->seq_k - 1)
    jmax = o->seq_k - 1;
  double m = -INFINITY, sum = 0.0, err = 0.0;
  for (int64_t j = 0; j <= jmax; j++) {
    double s = 0.0;
    for (int64_t c = 0; c < dim; c++)
      s += load_elem(r->q, o->dt,
                     ((b * o->seq_q + i) * o->heads + h) * dim + c) *
           load_elem(r->k, o->dt, ((b * o->seq_k + j) * hk + g) * dim + c);
    w[j] = s * scale;
    if (w[j] > m)
      m = w[j];
  }
  for (int64_t c = 0; c < dv; c++)
    acc[c] = 0.0;
  for (int64_t j = 0; j <= jmax; j++) {
    double e = exp(w[j] - m);
    sum += e;
    for (int64_t c = 0; c < dv; c++)
      acc[c] +=
          e * load_elem(r->v, o->dt, ((b * o->seq_k + j) * hk + g) * dv + c);
  }
  for (int64_t c = 0; c < dv; c++) {
    double ref = sum > 0 ? acc[c] / sum : 0.0;
    double got = load_elem(r->out, o->out_dt,
                           ((b * o->seq_q + i) * o->heads + h) * dv + c);
    double e = fabs(got - ref);
    if (!(e <= err)) /* NaN propagates */
      err = isnan(e) ? INFINITY : e;
  }
  return err;
}

static void check_rows(const bench_opts *o, bench_run *r) {
  r->check_ok = 1;
  if (!o->check)
    return;
  const int c = CLI_EXIT_RUNTIME;
  int64_t total =
      cli_mul(cli_mul(o->batch, o->heads, c, "rows"), o->seq_q, c, "rows");
  int n = total < 8 ? (int)total : 8;
  double *w = cli_calloc(o->seq_k, sizeof(double), "check");
  double *acc = cli_calloc(o->dim_v, sizeof(double), "check");
  for (int s = 0; s < n; s++) {
    int64_t idx =
        n > 1 ? (int64_t)((double)s * (double)(total - 1) / (double)(n - 1))
              : 0;
    double e = row_error(o, r, idx / (o->heads * o->seq_q),
                         idx / o->seq_q % o->heads, idx % o->seq_q, w, acc);
    if (!(e <= r->max_err))
      r->max_err = isnan(e) ? INFINITY : e;
    r->rows++;
  }
  double tol =
      o->dt == ATTN_DTYPE_F32 && o->out_dt == ATTN_DTYPE_F32 ? 1e-3 : 2e-2;
  r->check_ok = r->max_err <= tol;
}

/* ---------------------------------------------------------------------- */
/* Report                                                                 */
/* ---------------------------------------------------------------------- */

static void print_json(const bench_opts *b, const bench_run *r, double peak) {
  const char *isa = attn_isa_name(r->used_isa);
  printf("{\"command\":\"bench\",\"batch\":%lld,\"heads\":%lld,"
         "\"kv_heads\":%lld,\"seq_q\":%lld,\"seq_k\":%lld,\"dim\":%lld,"
         "\"dim_v\":%lld,\"causal\":%s,\"dtype\":\"%s\",\"out_dtype\":\"%s\","
         "\"threads\":%lld,"
         "\"isa\":\"%s\",\"repeat\":%lld,\"warmup\":%lld,"
         "\"median_ms\":%.6f,\"min_ms\":%.6f,\"max_ms\":%.6f,"
         "\"gflops\":%.3f,\"peak_gflops\":%.3f,\"peak_measured\":%s,"
         "\"peak_share\":%.4f,\"maxrss_mib\":%.2f,\"extra_mib\":%.2f",
         (long long)b->batch, (long long)b->heads, (long long)b->kv_heads,
         (long long)b->seq_q, (long long)b->seq_k, (long long)b->dim,
         (long long)b->dim_v, b->causal ? "true" : "false",
         args_dtype_name(b->dt), args_dtype_name(b->out_dt),
         (long long)b->threads, isa ? isa : "?", (long long)b->repeat,
         (long long)b->warmup, r->median * 1e3, r->times[0] * 1e3,
         r->times[b->repeat - 1] * 1e3, r->gflops, peak,
         r->peak_measured ? "true" : "false", r->share, r->rss_after,
         r->rss_after - r->rss_base);
  if (b->check)
    printf(",\"check\":\"%s\",\"check_rows\":%d,\"max_abs_err\":%.3e",
           r->check_ok ? "ok" : "FAILED", r->rows,
           isfinite(r->max_err) ? r->max_err : 1e308);
  printf("}\n");
}

static void print_text(const bench_opts *b, const bench_run *r, double peak) {
  const char *isa = attn_isa_name(r->used_isa);
  char thr[32];
  if (b->threads == 0)
    snprintf(thr, sizeof thr, "all");
  else
    snprintf(thr, sizeof thr, "%d", b->threads);
  printf("bench: batch %lld heads %lld kv_heads %lld seq_q %lld seq_k %lld "
         "dim %lld dim_v %lld%s dtype %s out %s threads %s isa %s\n",
         (long long)b->batch, (long long)b->heads, (long long)b->kv_heads,
         (long long)b->seq_q, (long long)b->seq_k, (long long)b->dim,
         (long long)b->dim_v, b->causal ? " causal" : "",
         args_dtype_name(b->dt), args_dtype_name(b->out_dt), thr,
         isa ? isa : "?");
  printf("time: median %.3f ms (min %.3f, max %.3f; %lld runs after %lld "
         "warm-up)\n",
         r->median * 1e3, r->times[0] * 1e3, r->times[b->repeat - 1] * 1e3,
         (long long)b->repeat, (long long)b->warmup);
  printf("speed: %.1f GFLOP/s, %.1f%% of FMA peak %.1f GFLOP/s (%s)\n",
         r->gflops, 100.0 * r->share, peak,
         r->peak_measured ? "measured" : "given");
  printf("memory: peak RSS %.1f MiB, %.1f MiB beyond inputs and output\n",
         r->rss_after, r->rss_after - r->rss_base);
  if (b->check) {
    printf("check: max abs error %.3e over %d sampled rows\n", r->max_err,
           r->rows);
    printf("check: %s\n", r->check_ok ? "ok" : "FAILED");
  }
}

int cmd_bench(int argc, char **argv) {
  bench_opts b = {.batch = 1,
                  .heads = 8,
                  .kv_heads = -1,
                  .seq = -1,
                  .seq_q = -1,
                  .seq_k = -1,
                  .dim = 64,
                  .dim_v = -1,
                  .repeat = 5,
                  .warmup = 1,
                  .check = 1,
                  .dt = ATTN_DTYPE_F32,
                  .out_dt = ATTN_DTYPE_F32,
                  .isa = ATTN_ISA_AUTO,
                  .peak = 0.0};
  parse(argc, argv, &b);
  resolve(&b);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  bench_run r;
  memset(&r, 0, sizeof r);
  setup(&b, &r);
  double peak = 0.0;
  time_runs(&b, &r, &peak);
  check_rows(&b, &r);
  if (b.json)
    print_json(&b, &r, peak);
  else
    print_text(&b, &r, peak);
  fflush(stdout);
  cli_cleanup();
  return r.check_ok ? 0 : CLI_EXIT_RUNTIME;
}
