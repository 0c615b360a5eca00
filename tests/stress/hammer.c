/*
 * attn_hammer: many threads calling libattn at once for a while, every
 * result compared bitwise with a single-threaded run (issue 15,
 * "Concurrency"; hammer.h says how a case is made and run).
 *
 *   attn_hammer [--threads N] [--seconds S] [--seed X] [--cases N] [-v]
 *
 *   --threads N   threads calling the library (default 64); N / 16 of
 *                 them (at least one) create a context, run a few cases
 *                 on it and free it, in a loop;
 *   --seconds S   how long they call (default 5; fractions allowed);
 *   --seed X      the cases and the workers' choices (default 0x4A11);
 *   --cases N     cases per kind (default 12; decode, cache, merge and
 *                 layer get N / 2);
 *   -v            describe every case.
 * The environment sets the defaults of the first two (ATTN_HAMMER_THREADS,
 * ATTN_HAMMER_SECONDS: what ctest's short run uses, so that a CI job can
 * lengthen it); the options override them.
 *
 * Before the threads start, every case is built and run once on one thread
 * (its reference). Then each worker picks cases at random and runs them
 * under the default context, one context shared by all workers, its own
 * context or (churners) a fresh one, with 0 (the context's), 1, 2 or 3
 * threads, on the case's shared inputs or its own copy, sometimes with a
 * caller workspace. Prints the calls made per kind and "N passed, N
 * failed" (one check per run; a run compares every output byte); exits 1
 * on any failure.
 */
#include "hammer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const hm_count_names[HM_NCOUNT] = {
    "forward",        "decode (attn_forward)",
    "backward",       "cache append",
    "cache attend",   "merge",
    "merge backward", "layer forward",
    "mask compile",   "context create/free"};

static const char *const ctx_names[HM_NCTX] = {"default", "shared", "own",
                                               "fresh"};

/* ---------------------------------------------------------------------- */
/* Reports                                                                 */
/* ---------------------------------------------------------------------- */
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;
static int n_reports; /* under report_mu */
#define MAX_REPORTS 20

void hm_report(const hm_worker *w, const hm_kind *k, const void *c,
               const hm_run *r, const char *fmt, ...) {
  pthread_mutex_lock(&report_mu);
  if (n_reports++ < MAX_REPORTS) {
    printf("FAIL %s (worker %d, context %s, threads %d, %s data%s): ", k->name,
           w->id, ctx_names[r->ctx_kind], r->threads,
           r->private_data ? "private" : "shared",
           r->workspace ? ", caller workspace" : "");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    k->describe(c, stdout);
    fflush(stdout);
  }
  pthread_mutex_unlock(&report_mu);
}

int hm_same(const hm_worker *w, const hm_kind *k, const void *c,
            const hm_run *r, const char *what, const void *got,
            const void *want, size_t bytes) {
  if (bytes == 0 || memcmp(got, want, bytes) == 0)
    return 0;
  const uint8_t *g = got, *x = want;
  size_t at = 0, n = 0;
  while (g[at] == x[at])
    at++;
  for (size_t i = at; i < bytes; i++)
    n += g[i] != x[i];
  hm_report(w, k, c, r,
            "%s differs from the single-threaded run: %zu of %zu bytes, "
            "first at byte %zu (0x%02x, want 0x%02x)",
            what, n, bytes, at, g[at], x[at]);
  return 1;
}

void *hm_dup(const void *src, size_t n) {
  if (!src || n == 0)
    return NULL;
  void *d = tc_alloc(n);
  memcpy(d, src, n);
  return d;
}

void *hm_workspace(size_t bytes, void **aligned) {
  void *raw = tc_alloc(bytes + 64);
  *aligned = (void *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
  return raw;
}

/* ---------------------------------------------------------------------- */
/* Cases                                                                   */
/* ---------------------------------------------------------------------- */
typedef struct hcase {
  const hm_kind *kind;
  void *c;
} hcase;

static hcase *cases;
static int n_cases;
static attn_context *shared_ctx;
static atomic_int stop;
static int churn_threads;

static void cases_make(uint64_t seed, int per_kind, int verbose) {
  const hm_kind *kinds[] = {
      &hm_kind_forward, &hm_kind_decode, &hm_kind_backward,
      &hm_kind_cache,   &hm_kind_merge,
#ifdef ATTN_HAMMER_LAYER
      &hm_kind_layer,
#endif
  };
  const int nk = (int)(sizeof kinds / sizeof kinds[0]);
  const int half = per_kind / 2 > 0 ? per_kind / 2 : 1;
  const int count[] = {per_kind, half, per_kind, half, half, half};
  int total = 0;
  for (int k = 0; k < nk; k++)
    total += count[k];
  cases = calloc((size_t)total, sizeof *cases);
  attn_context *ref = NULL;
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = 1;
  if (!cases || attn_context_create(&ref, &o) != ATTN_OK) {
    fprintf(stderr, "hammer: cannot make the reference context\n");
    exit(2);
  }
  for (int k = 0; k < nk; k++)
    for (int i = 0; i < count[k]; i++) {
      hcase *h = &cases[n_cases++];
      h->kind = kinds[k];
      h->c = kinds[k]->make(seed, i, ref);
      if (verbose) {
        printf("case %d: %s\n", n_cases - 1, kinds[k]->name);
        kinds[k]->describe(h->c, stdout);
      }
    }
  attn_context_free(ref);
}

/* ---------------------------------------------------------------------- */
/* Workers                                                                 */
/* ---------------------------------------------------------------------- */
static void run_one(hm_worker *w, attn_context *fresh) {
  static const int threads[4] = {0, 1, 2, 3};
  hm_run r;
  memset(&r, 0, sizeof r);
  const int ci = (int)tc_below(&w->rng, n_cases);
  const hcase *h = &cases[ci];
  if (fresh) {
    r.ctx = fresh;
    r.ctx_kind = HM_CTX_FRESH;
  } else {
    r.ctx_kind = (int)tc_below(&w->rng, 3);
    r.ctx = r.ctx_kind == HM_CTX_DEFAULT  ? NULL
            : r.ctx_kind == HM_CTX_SHARED ? shared_ctx
                                          : w->own_ctx;
  }
  r.threads = threads[tc_below(&w->rng, 4)];
  r.private_data = tc_chance(&w->rng, 0.4);
  r.workspace = tc_chance(&w->rng, 0.2);
  if (h->kind->run(h->c, &w->priv[ci], w, &r) == 0)
    w->pass++;
  else
    w->fail++;
  /* Now and then a private copy is dropped, to be built again (its mask
   * compiled again) while the others run. */
  if (w->priv[ci] && tc_chance(&w->rng, 0.05)) {
    h->kind->priv_free(w->priv[ci]);
    w->priv[ci] = NULL;
  }
}

static attn_context *context_new(hm_worker *w, int threads) {
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = threads;
  attn_context *ctx = NULL;
  if (attn_context_create(&ctx, &o) != ATTN_OK) {
    pthread_mutex_lock(&report_mu);
    printf("FAIL worker %d: attn_context_create(%d threads)\n", w->id, threads);
    pthread_mutex_unlock(&report_mu);
    w->fail++;
    return NULL;
  }
  return ctx;
}

static void *worker_main(void *vp) {
  hm_worker *w = vp;
  const int churner = w->id < churn_threads;
  if (!churner)
    w->own_ctx = context_new(w, 2 + (int)tc_below(&w->rng, 2));
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    if (!churner) {
      run_one(w, NULL);
      continue;
    }
    attn_context *ctx = context_new(w, 1 + (int)tc_below(&w->rng, 4));
    if (!ctx)
      continue;
    const int64_t n = tc_range(&w->rng, 0, 3);
    for (int64_t i = 0; i < n; i++)
      run_one(w, ctx);
    attn_context_free(ctx);
    w->counts[HM_CONTEXT]++;
  }
  for (int i = 0; i < n_cases; i++)
    if (w->priv[i])
      cases[i].kind->priv_free(w->priv[i]);
  attn_context_free(w->own_ctx);
  w->counts[HM_CONTEXT] += !churner;
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Main                                                                    */
/* ---------------------------------------------------------------------- */
static void usage(void) {
  fprintf(stderr, "usage: attn_hammer [--threads N] [--seconds S] [--seed X] "
                  "[--cases N] [-v]\n");
  exit(2);
}

static void sleep_s(double s) {
  struct timespec ts;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0)
    ;
}

int main(int argc, char **argv) {
  int nthreads = (int)tc_env_ll("ATTN_HAMMER_THREADS", 64);
  int per_kind = 12, verbose = 0;
  double seconds = (double)tc_env_ll("ATTN_HAMMER_SECONDS", 5);
  uint64_t seed = 0x4A11;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    char *end = NULL;
    if (!strcmp(a, "-v")) {
      verbose = 1;
      continue;
    }
    if (i + 1 >= argc)
      usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--threads"))
      nthreads = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--seconds"))
      seconds = strtod(v, &end);
    else if (!strcmp(a, "--seed"))
      seed = strtoull(v, &end, 0);
    else if (!strcmp(a, "--cases"))
      per_kind = (int)strtol(v, &end, 10);
    else
      usage();
    if (!end || *end || end == v)
      usage();
  }
  if (nthreads < 1 || nthreads > 4096 || per_kind < 1 || !(seconds >= 0.0))
    usage();
  setvbuf(stdout, NULL, _IOLBF, 0);

  const double t0 = tc_now();
  cases_make(seed, per_kind, verbose);
  const double t_ref = tc_now() - t0;
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = 3;
  if (attn_context_create(&shared_ctx, &o) != ATTN_OK) {
    fprintf(stderr, "hammer: cannot make the shared context\n");
    return 2;
  }
  churn_threads = nthreads >= 2 ? (nthreads / 16 > 0 ? nthreads / 16 : 1) : 0;
  printf("hammer: %d cases (references in %.1f s), %d threads (%d make and "
         "free contexts), %.1f s, seed 0x%llx\n",
         n_cases, t_ref, nthreads, churn_threads, seconds,
         (unsigned long long)seed);

  hm_worker *ws = calloc((size_t)nthreads, sizeof *ws);
  pthread_t *ids = calloc((size_t)nthreads, sizeof *ids);
  if (!ws || !ids)
    return 2;
  int started = 0;
  const double t1 = tc_now();
  for (int i = 0; i < nthreads; i++) {
    ws[i].id = i;
    ws[i].rng.s = tc_case_seed(seed ^ 0x3012ull, (uint64_t)i);
    ws[i].priv = calloc((size_t)n_cases, sizeof(void *));
    if (!ws[i].priv || pthread_create(&ids[i], NULL, worker_main, &ws[i]))
      break;
    started++;
  }
  sleep_s(seconds);
  atomic_store(&stop, 1);
  for (int i = 0; i < started; i++)
    pthread_join(ids[i], NULL);
  const double t_run = tc_now() - t1;

  long counts[HM_NCOUNT] = {0}, pass = 0, fail = 0, calls = 0;
  for (int i = 0; i < started; i++) {
    for (int k = 0; k < HM_NCOUNT; k++)
      counts[k] += ws[i].counts[k];
    pass += ws[i].pass;
    fail += ws[i].fail;
    free(ws[i].priv);
  }
  if (started < nthreads) {
    printf("FAIL: only %d of %d threads started\n", started, nthreads);
    fail++;
  }
  printf("calls made by %d threads in %.1f s:\n", started, t_run);
  for (int k = 0; k < HM_NCOUNT; k++) {
    printf("  %-22s %ld\n", hm_count_names[k], counts[k]);
    calls += k == HM_CONTEXT ? 0 : counts[k];
  }
  printf("  %-22s %ld\n", "library calls", calls);
  if (n_reports > MAX_REPORTS)
    printf("(%d mismatches reported, the first %d shown)\n", n_reports,
           MAX_REPORTS);
  if (pass == 0) {
    printf("FAIL: no run finished\n");
    fail++;
  }
  attn_context_free(shared_ctx);
  for (int i = 0; i < n_cases; i++)
    cases[i].kind->free(cases[i].c);
  free(cases);
  free(ws);
  free(ids);
  printf("%ld passed, %ld failed\n", pass, fail);
  return fail ? 1 : 0;
}
