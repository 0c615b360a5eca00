/*
 * cmd_decode.c - `attn decode`: times attention of a few query rows against
 * a KV cache (attn_kv_cache_attend, the split-KV decode kernel) on
 * pseudo-random data, and reports the memory bandwidth it reaches.
 *
 * The cache is filled through attn_kv_cache_append (contiguous, or paged
 * with the pages of the sequences interleaved in the pool). Bytes moved per
 * call: K and V of every stored token once, plus q, o and lse. The read
 * bandwidth is measured in the same run (attn_read_bandwidth_gbps) unless
 * --bandwidth gives it. --check compares the result with attn_forward on
 * the same keys as plain tensors (bitwise: both take the decode kernel for
 * up to 48 query rows).
 */
#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char cmd_decode_help[] =
    "attn decode [options]     time decoding against a KV cache\n"
    "  --heads-q H (32) --heads-kv HK (8) --head-dim D (128) --cache-len N\n"
    "  (32768 tokens per sequence) --batch B (1) --queries Q (1 query rows\n"
    "  per sequence) --dtype f32|bf16|f16|q8_0|q4_0 (f32, the cache's\n"
    "  storage; q8_0 and q4_0 need a head_dim multiple of 32)\n"
    "  --q-dtype f32|bf16|f16 (f32; the query's and the output's storage:\n"
    "  bf16 q on a bf16 cache takes bf16 dot products where the ISA has\n"
    "  them, docs/bf16.md)\n"
    "  --page-size P (0 = contiguous) --threads N (0 = all) --isa ISA\n"
    "  --reps R (20) --warmup W (2) --bandwidth GBS (default: measured in\n"
    "  the same run) --json --check (attn_forward on the same keys must\n"
    "  agree: bitwise up to 48 query rows, within 1e-4 beyond; else exit 1)\n"
    "  prints the median time, GB/s moved (K and V once) and the share of\n"
    "  the measured read bandwidth\n";

typedef struct decode_opts {
  int64_t hq, hk, d, len, batch, queries, page, reps, warmup;
  int threads, check, json;
  attn_dtype dt, qdt;
  attn_isa isa;
  double bandwidth; /* 0 = measure */
} decode_opts;

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */
/* ---------------------------------------------------------------------- */
static int take_int(decode_opts *o, args *a) {
  const int64_t big = (int64_t)1 << 31;
  const struct {
    const char *name;
    int64_t *var;
    int64_t lo, hi;
  } ints[] = {
      {"--heads-q", &o->hq, 1, 4096},       {"--heads-kv", &o->hk, 1, 4096},
      {"--head-dim", &o->d, 1, 256},        {"--cache-len", &o->len, 1, big},
      {"--batch", &o->batch, 1, 65536},     {"--queries", &o->queries, 1, 4096},
      {"--page-size", &o->page, 0, big},    {"--reps", &o->reps, 1, 1000000},
      {"--warmup", &o->warmup, 0, 1000000},
  };
  for (size_t t = 0; t < sizeof ints / sizeof ints[0]; t++) {
    if (args_is(a, ints[t].name)) {
      *ints[t].var = args_int(a->name, args_value(a), ints[t].lo, ints[t].hi);
      return 1;
    }
  }
  return 0;
}

static void parse(int argc, char **argv, decode_opts *o) {
  args a = args_start(argc, argv);
  while (args_next(&a)) {
    if (take_int(o, &a))
      continue;
    if (args_is(&a, "--help")) {
      fputs(cmd_decode_help, stdout);
      exit(0);
    } else if (args_is(&a, "--threads")) {
      o->threads = args_threads(args_value(&a));
    } else if (args_is(&a, "--isa")) {
      o->isa = args_isa("--isa", args_value(&a));
    } else if (args_is(&a, "--dtype")) {
      const char *v = args_value(&a);
      o->dt = v[0] == 'q' ? args_quant("--dtype", v) : args_dtype("--dtype", v);
    } else if (args_is(&a, "--q-dtype")) {
      o->qdt = args_dtype("--q-dtype", args_value(&a));
    } else if (args_is(&a, "--bandwidth")) {
      o->bandwidth = args_real("--bandwidth", args_value(&a));
      if (!(o->bandwidth > 0))
        cli_fail(CLI_EXIT_USAGE, "--bandwidth: must be > 0 (GB/s)");
    } else if (args_is(&a, "--check")) {
      args_flag(&a);
      o->check = 1;
    } else if (args_is(&a, "--json")) {
      args_flag(&a);
      o->json = 1;
    } else {
      args_unknown(&a, "decode");
    }
  }
  if (attn_dtype_block(o->dt) > 1 && o->d % attn_dtype_block(o->dt) != 0)
    cli_fail(CLI_EXIT_USAGE,
             "--dtype %s: --head-dim (%lld) must be a multiple of %lld",
             args_dtype_name(o->dt), (long long)o->d,
             (long long)attn_dtype_block(o->dt));
  if (o->hq % o->hk != 0)
    cli_fail(CLI_EXIT_USAGE,
             "--heads-q (%lld) must be a multiple of --heads-kv (%lld)",
             (long long)o->hq, (long long)o->hk);
}

/* ---------------------------------------------------------------------- */
/* The cache                                                              */
/* ---------------------------------------------------------------------- */
typedef struct decode_run {
  attn_kv_cache c;
  int32_t *lens, *table;
  float *q, *o, *lse, *o2, *lse2;
  attn_params p;
  double *times, median, gbytes, read_gbps;
  char msg[256];
} decode_run;

static uint64_t next(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 11;
}

static float unit(uint64_t *s) {
  return (float)((double)next(s) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Allocates the cache and fills every sequence to cache_len tokens by
 * appends of up to 4096 tokens. */
static void fill_cache(const decode_opts *o, decode_run *r) {
  attn_kv_cache *c = &r->c;
  attn_kv_cache_init(c);
  c->dtype = o->dt;
  c->num_seqs = o->batch;
  c->heads_kv = o->hk;
  c->head_dim = o->d;
  const size_t es = attn_dtype_size(o->dt);
  const int64_t blk = attn_dtype_block(o->dt); /* values per element */
  int64_t rows = cli_mul(o->batch, o->len, CLI_EXIT_USAGE, "the cache");
  if (o->page > 0) {
    const int64_t bps = (o->len + o->page - 1) / o->page;
    c->page_size = o->page;
    c->blocks_per_seq = bps;
    c->num_pages = cli_mul(o->batch, bps, CLI_EXIT_USAGE, "the page pool");
    rows = cli_mul(c->num_pages, o->page, CLI_EXIT_USAGE, "the page pool");
    r->table = cli_calloc(c->num_pages, sizeof(int32_t), "the block table");
    for (int64_t s = 0; s < o->batch; s++)
      for (int64_t b = 0; b < bps; b++) /* sequences interleaved */
        r->table[s * bps + b] = (int32_t)(b * o->batch + s);
    c->block_table = r->table;
  } else {
    c->capacity = o->len;
  }
  const int64_t elems =
      cli_mul(cli_mul(rows, o->hk, CLI_EXIT_USAGE, "the cache"), o->d / blk,
              CLI_EXIT_USAGE, "the cache");
  c->k = cli_calloc_large(elems, es, "the cache's keys");
  c->v = cli_calloc_large(elems, es, "the cache's values");
  r->lens = cli_calloc(o->batch, sizeof(int32_t), "seq_lens");
  c->seq_lens = r->lens;
  const int64_t step = o->len < 4096 ? o->len : 4096;
  float *kn = cli_calloc(o->batch * step * o->hk * o->d, sizeof(float), "k");
  uint64_t seed = 0x5EED;
  for (int64_t i = 0; i < o->batch * step * o->hk * o->d; i++)
    kn[i] = unit(&seed);
  attn_tensor t =
      attn_tensor_bshd(kn, ATTN_DTYPE_F32, o->batch, step, o->hk, o->d);
  int32_t *nn = cli_calloc(o->batch, sizeof(int32_t), "n_new");
  for (int64_t done = 0; done < o->len; done += step) {
    for (int64_t s = 0; s < o->batch; s++)
      nn[s] = (int32_t)(o->len - done < step ? o->len - done : step);
    attn_status st = attn_kv_cache_append(NULL, c, t, t, nn, NULL);
    if (st != ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "filling the cache: %s", attn_strerror(st));
  }
}

static void setup_call(const decode_opts *o, decode_run *r) {
  const int64_t nq = o->batch * o->queries * o->hq;
  r->q = cli_calloc(nq * o->d, sizeof(float), "q");
  r->o = cli_calloc(nq * o->d, sizeof(float), "o");
  r->lse = cli_calloc(nq, sizeof(float), "lse");
  uint64_t seed = 0xC0FFEE;
  for (int64_t i = 0; i < nq * o->d; i++)
    r->q[i] = unit(&seed);
  if (o->qdt != ATTN_DTYPE_F32) { /* in place: 2-byte values, front half */
    uint16_t *h = (uint16_t *)r->q;
    for (int64_t i = 0; i < nq * o->d; i++)
      h[i] = o->qdt == ATTN_DTYPE_BF16 ? attn_f32_to_bf16(r->q[i])
                                       : attn_f32_to_f16(r->q[i]);
  }
  attn_params *p = &r->p;
  attn_params_init(p);
  p->q = attn_tensor_bshd(r->q, o->qdt, o->batch, o->queries, o->hq, o->d);
  p->o = attn_tensor_bshd(r->o, o->qdt, o->batch, o->queries, o->hq, o->d);
  p->lse = r->lse;
  p->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  p->num_threads = o->threads;
  p->isa = o->isa;
  p->error_message = r->msg;
  p->error_message_size = sizeof r->msg;
}

/* ---------------------------------------------------------------------- */
/* Timing and the check                                                   */
/* ---------------------------------------------------------------------- */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void time_calls(const decode_opts *o, decode_run *r, attn_context *ctx) {
  r->times = cli_calloc(o->reps, sizeof(double), "times");
  for (int64_t i = 0; i < o->warmup + o->reps; i++) {
    const double t0 = now();
    attn_status st = attn_kv_cache_attend(ctx, &r->c, &r->p, NULL);
    const double dt = now() - t0;
    if (st != ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "attn_kv_cache_attend: %s: %s",
               attn_strerror(st), r->msg);
    if (i >= o->warmup)
      r->times[i - o->warmup] = dt;
  }
  qsort(r->times, (size_t)o->reps, sizeof(double), cmp_double);
  r->median = o->reps % 2
                  ? r->times[o->reps / 2]
                  : 0.5 * (r->times[o->reps / 2 - 1] + r->times[o->reps / 2]);
  const double kv = (double)o->batch * (double)o->len * (double)o->hk *
                    (double)(2 * o->d / attn_dtype_block(o->dt)) *
                    (double)attn_dtype_size(o->dt);
  const double qo = (double)(o->batch * o->queries * o->hq) *
                    (double)(2 * o->d * attn_dtype_size(o->qdt) + 4);
  r->gbytes = (kv + qo) * 1e-9;
}

/* Element i of an output of o->qdt. */
static double out_value(const decode_opts *o, const float *x, int64_t i) {
  const uint16_t *h = (const uint16_t *)x;
  return o->qdt == ATTN_DTYPE_F32    ? (double)x[i]
         : o->qdt == ATTN_DTYPE_BF16 ? (double)attn_bf16_to_f32(h[i])
                                     : (double)attn_f16_to_f32(h[i]);
}

/* attn_forward on the same keys as tensors (a paged cache gathered), the
 * same positions; returns the largest difference (0: bitwise equal). */
static double check(const decode_opts *o, decode_run *r, attn_context *ctx) {
  const size_t es = attn_dtype_size(o->dt);
  const int64_t row = o->hk * o->d / attn_dtype_block(o->dt); /* elements */
  void *k = r->c.k, *v = r->c.v;
  if (o->page > 0) {
    k = cli_calloc(o->batch * o->len * row, es, "gathered keys");
    v = cli_calloc(o->batch * o->len * row, es, "gathered values");
    for (int64_t s = 0; s < o->batch; s++)
      for (int64_t t = 0; t < o->len; t++) {
        const int32_t pg = r->table[s * r->c.blocks_per_seq + t / o->page];
        const size_t from =
            (size_t)(((int64_t)pg * o->page + t % o->page) * row) * es;
        const size_t to = (size_t)((s * o->len + t) * row) * es;
        memcpy((char *)k + to, (char *)r->c.k + from, (size_t)row * es);
        memcpy((char *)v + to, (char *)r->c.v + from, (size_t)row * es);
      }
  }
  const int64_t nq = o->batch * o->queries * o->hq;
  r->o2 = cli_calloc(nq * o->d, sizeof(float), "o"); /* f32 or less */
  r->lse2 = cli_calloc(nq, sizeof(float), "lse");
  attn_params p = r->p;
  p.k = attn_tensor_bshd(k, o->dt, o->batch, o->len, o->hk, o->d);
  p.v = attn_tensor_bshd(v, o->dt, o->batch, o->len, o->hk, o->d);
  p.kv_lens = r->lens;
  p.o.data = r->o2;
  p.lse = r->lse2;
  attn_status st = attn_forward(ctx, &p);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "attn_forward: %s: %s", attn_strerror(st),
             r->msg);
  double diff = 0;
  for (int64_t i = 0; i < nq * o->d; i++)
    diff = fmax(diff, fabs(out_value(o, r->o, i) - out_value(o, r->o2, i)));
  for (int64_t i = 0; i < nq; i++)
    if (r->lse[i] != r->lse2[i])
      diff = fmax(diff, fabs((double)r->lse[i] - (double)r->lse2[i]));
  return diff;
}

static void report(const decode_opts *o, const decode_run *r, int checked,
                   double diff) {
  const double gbs = r->gbytes / r->median;
  const double share = 100.0 * gbs / r->read_gbps;
  const char *dt = args_dtype_name(o->dt);
  if (o->json) {
    printf("{\"command\":\"decode\",\"batch\":%lld,\"heads_q\":%lld,"
           "\"heads_kv\":%lld,\"head_dim\":%lld,\"cache_len\":%lld,"
           "\"queries\":%lld,\"dtype\":\"%s\",\"q_dtype\":\"%s\","
           "\"page_size\":%lld,"
           "\"threads\":%d,\"median_ms\":%.4f,\"gb_moved\":%.6f,"
           "\"gbps\":%.3f,\"read_gbps\":%.3f,\"share\":%.4f",
           (long long)o->batch, (long long)o->hq, (long long)o->hk,
           (long long)o->d, (long long)o->len, (long long)o->queries, dt,
           args_dtype_name(o->qdt), (long long)o->page, o->threads,
           r->median * 1e3, r->gbytes, gbs, r->read_gbps, share / 100.0);
    if (checked)
      printf(",\"max_diff\":%.3g", diff);
    printf("}\n");
    return;
  }
  printf("decode: batch %lld, heads %lld/%lld, head_dim %lld, cache %lld "
         "tokens (%s, %s), %lld query row(s) (%s)\n",
         (long long)o->batch, (long long)o->hq, (long long)o->hk,
         (long long)o->d, (long long)o->len, dt,
         o->page ? "paged" : "contiguous", (long long)o->queries,
         args_dtype_name(o->qdt));
  printf("time: %.3f ms median of %lld (min %.3f ms)\n", r->median * 1e3,
         (long long)o->reps, r->times[0] * 1e3);
  printf("moved: %.1f MB, %.2f GB/s = %.1f%% of the read bandwidth %.2f GB/s "
         "(%s)\n",
         r->gbytes * 1e3, gbs, share, r->read_gbps,
         o->bandwidth > 0 ? "given" : "measured");
  if (checked)
    printf("check: %s (attn_forward on the same keys: max difference %.3g)\n",
           diff == 0 ? "ok, bitwise equal" : "within 1e-4", diff);
}

int cmd_decode(int argc, char **argv) {
  decode_opts o = {.hq = 32,
                   .hk = 8,
                   .d = 128,
                   .len = 32768,
                   .batch = 1,
                   .queries = 1,
                   .page = 0,
                   .reps = 20,
                   .warmup = 2,
                   .dt = ATTN_DTYPE_F32,
                   .qdt = ATTN_DTYPE_F32,
                   .isa = ATTN_ISA_AUTO};
  parse(argc, argv, &o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  decode_run r;
  memset(&r, 0, sizeof r);
  attn_context_options co;
  attn_context_options_init(&co);
  co.num_threads = o.threads;
  co.isa = o.isa;
  attn_context *ctx = NULL;
  attn_status st = attn_context_create(&ctx, &co);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "attn_context_create: %s", attn_strerror(st));
  cli_defer((void (*)(void *))attn_context_free, ctx);
  fill_cache(&o, &r);
  setup_call(&o, &r);
  r.read_gbps = o.bandwidth;
  if (!(r.read_gbps > 0)) {
    st = attn_read_bandwidth_gbps(o.threads, 1.0, &r.read_gbps);
    if (st != ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "measuring the read bandwidth: %s",
               attn_strerror(st));
  }
  time_calls(&o, &r, ctx);
  const double diff = o.check ? check(&o, &r, ctx) : 0.0;
  report(&o, &r, o.check, diff);
  /* Up to ATTN_DECODE_MAX_ROWS rows both calls take the decode kernel:
   * bitwise equal; beyond, attn_forward takes the tiled kernel. */
  const double allowed = o.queries <= ATTN_DECODE_MAX_ROWS ? 0.0 : 1e-4;
  if (o.check && !(diff <= allowed))
    cli_fail(CLI_EXIT_RUNTIME,
             "check failed: attn_forward differs by %.3g (allowed %.3g)", diff,
             allowed);
  cli_cleanup();
  return 0;
}
