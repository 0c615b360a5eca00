/*
 * Test "abi" (include/attn.h, "ABI"): structs grow at the end and programs
 * keep working.
 *
 *   test_abi CONSUMER_0_1 CONSUMER_0_2 CONSUMER_0_3
 *
 * Part 1, old programs on the new library. CONSUMER_0_1 is
 * abi_consumer_0_1, built against libattn 0.1's attn.h (tests/abi/
 * attn_0_1.h), CONSUMER_0_2 and CONSUMER_0_3 the same program built against
 * 0.2's and 0.3's (attn_0_2.h, attn_0_3.h), all three linked against
 * today's libattn.so. Each runs every case of abi_cases.h its header knows
 * (MHA, GQA, causal both ways, bias + dbias, kv_lens, ALiBi, window,
 * softcap, bf16, a context, a caller workspace; for 0.3 also RoPE with a
 * T5 table and drel_bias, and a paged KV cache: append with RoPE, attend
 * with T5) through the entry points its header calls (0.1's unsuffixed
 * ones, the _sized ones with 0.2's or 0.3's sizes) and writes its results;
 * this program, built against today's attn.h and linked against the same
 * libattn.so, makes the same calls with today's sizes and requires the two
 * to be bitwise equal, and its own results to pass the double-precision
 * oracle (tests/oracle.c, oracle_bwd.c: the forward and backward tests'
 * rule, err <= 2 * naive f32 + floor).
 *
 * Part 2, sizes the library does not know. attn_forward_sized,
 * attn_backward_sized, attn_forward_check_sized, attn_backward_check_sized
 * and both *_workspace_size_sized with sizes 0, 1, ATTN_PARAMS_SIZE_0_1,
 * _0_2 and _0_3 +- 8, sizeof(attn_params) - 8, sizeof + 8, sizeof + 64 and
 * SIZE_MAX must return ATTN_ERR_ABI, write no output, and, when the size is
 * above ATTN_PARAMS_SIZE_0_1 (so the caller's error_message field is
 * there), a NUL-terminated reason naming every known size; below it the
 * message buffer is not touched either. attn_params_init_sized and
 * attn_context_options_init_sized with such a size write nothing; with a
 * known size exactly that many bytes. attn_context_create_sized with a bad
 * size: ATTN_ERR_ABI. A call with an old size ignores whatever lies in the
 * fields appended after it, however invalid (0.1: the 0.2 fields, 0.2: the
 * 0.3 ones, 0.3: the 0.4 ones: NaN sinks, dsinks, dropout_p 7), and writes
 * nothing into the struct; with today's size those invalid 0.4 fields give
 * ATTN_ERR_INVALID_ARGUMENT with a reason and write no output, and their
 * defaults are NULL / 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <attn.h>

#include "abi_cases.h"
#include "oracle.h"
#include "oracle_bwd.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures, checks;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    checks++;                                                                  \
    if (!(cond)) {                                                             \
      failures++;                                                              \
      printf("FAIL: ");                                                        \
      printf(__VA_ARGS__);                                                     \
      printf("\n");                                                            \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------------------------- */
/* Part 1: the consumers built against 0.1's, 0.2's and 0.3's headers    */
/* ---------------------------------------------------------------------- */
static int run_consumer(const char *exe, const char *out) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    char *argv[3];
    argv[0] = (char *)exe;
    argv[1] = (char *)out;
    argv[2] = NULL;
    execv(exe, argv);
    perror("execv");
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int get(FILE *f, void *dst, size_t bytes) {
  return fread(dst, 1, bytes, f) == bytes;
}

/* First index where a and b differ bitwise, or -1. */
static int64_t first_diff(const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
      return i;
  return -1;
}

/* The forward and backward oracles of tests/test_forward.c and
 * tests/test_backward.c, on the results now in p's outputs. */
static void check_oracle(const attn_params *p, const char *what) {
  oracle_ref ref;
  oracle_naive nv;
  oracle_cmp cmp;
  if (oracle_forward(p, &ref) != 0 || oracle_naive_f32(p, &nv) != 0) {
    printf("oracle: out of memory\n");
    exit(2);
  }
  oracle_compare(p, &ref, &nv, &cmp);
  CHECK(cmp.ok, "%s: forward vs oracle: %s (err o %.3g, naive %.3g)", what,
        cmp.problem, cmp.err_o, cmp.err_o_naive);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);

  oracle_grads g, gn;
  if (oracle_backward(p, &g) != 0 || oracle_backward_f32(p, &gn) != 0) {
    printf("oracle: out of memory\n");
    exit(2);
  }
  oracle_grad_cmp gc;
  oracle_grads_compare(p, &g, &gn, &gc);
  CHECK(gc.ok, "%s: backward vs oracle: %s", what, gc.problem);
  oracle_grads_free(&g);
  oracle_grads_free(&gn);
}

/* The KV cache case: attend's o and lse against the forward oracle of the
 * same problem as attn_forward states it: q rotated at its positions
 * (query i of sequence s at seq_lens[s] - seq_q + i), the keys and values
 * read back from the pages into [b, capacity, heads_kv, d] with kv_lens =
 * seq_lens. */
static void check_oracle_kv(const abi_case_0_3 *c, const abi_bufs *bf,
                            const attn_params *pa, const char *what) {
  const abi_case *b = &c->base;
  const int64_t ps = c->page_size, bps = abi_cache_bps(c), cap = bps * ps;
  const int64_t rk = b->hk * b->d, rv = b->hk * b->dv; /* floats per row */
  float *q = abi_alloc((size_t)bf->n_q * 4);
  float *k = abi_alloc((size_t)(b->b * cap * rk) * 4);
  float *v = abi_alloc((size_t)(b->b * cap * rv) * 4);
  int64_t qoff[4];
  for (int64_t s = 0; s < b->b; s++) {
    qoff[s] = bf->seq_lens[s] - b->sq;
    for (int64_t t = 0; t < bf->seq_lens[s]; t++) {
      const int64_t row = bf->block_table[s * bps + t / ps] * ps + t % ps;
      memcpy(k + (s * cap + t) * rk, bf->cache_k + row * rk, (size_t)rk * 4);
      memcpy(v + (s * cap + t) * rv, bf->cache_v + row * rv, (size_t)rv * 4);
    }
  }
  attn_rope r;
  abi_rope_0_3(c, &r);
  attn_params p = *pa;
  const attn_tensor qin = p.q;
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, b->b, b->sq, b->hq, b->d);
  const attn_status st = attn_rope_apply(&r, qin, p.q, NULL, 0, qoff, 0);
  CHECK(st == ATTN_OK, "%s: attn_rope_apply on q: status %d", what, (int)st);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, b->b, cap, b->hk, b->d);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, b->b, cap, b->hk, b->dv);
  p.kv_lens = bf->seq_lens;
  p.workspace = NULL;
  p.workspace_size = 0;
  oracle_ref ref;
  oracle_naive nv;
  oracle_cmp cmp;
  if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0) {
    printf("oracle: out of memory\n");
    exit(2);
  }
  oracle_compare(&p, &ref, &nv, &cmp);
  CHECK(cmp.ok, "%s: attend vs oracle: %s (err o %.3g, naive %.3g)", what,
        cmp.problem, cmp.err_o, cmp.err_o_naive);
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  free(q), free(k), free(v);
}

/* The consumer's header: its magic, its sizeof(attn_params), which must
 * be `want` (its release's), and its number of cases, which must be
 * `ncases`. 0 when the header could be read. */
static int read_consumer_header(FILE *f, const char *path, size_t want,
                                int ncases) {
  uint32_t magic = 0, nc = 0;
  uint64_t psize = 0;
  if (!get(f, &magic, sizeof magic) || !get(f, &psize, sizeof psize) ||
      !get(f, &nc, sizeof nc) || magic != ABI_MAGIC) {
    CHECK(0, "%s: bad header", path);
    return -1;
  }
  if (nc != (uint32_t)ncases) {
    CHECK(0, "%s: %u cases, want %d", path, (unsigned)nc, ncases);
    return -1;
  }
  CHECK(psize == want,
        "the consumer's attn_params is %llu bytes, its release's is %zu: it "
        "was not built against that header",
        (unsigned long long)psize, want);
  CHECK(psize < sizeof(attn_params),
        "today's attn_params (%zu bytes) is not larger than the old (%llu)",
        sizeof(attn_params), (unsigned long long)psize);
  return 0;
}

/* The consumer's results of one run (n[t] floats each, in f) against
 * today's in bf, bitwise. -1 when one is missing from f. */
static int compare_outputs(FILE *f, const char *what, const char *name,
                           const int64_t n[ABI_NUM_OUT], const abi_bufs *bf) {
  for (int t = 0; t < ABI_NUM_OUT; t++) {
    if (n[t] == 0)
      continue;
    float *theirs = malloc((size_t)n[t] * sizeof(float));
    if (!theirs || !get(f, theirs, (size_t)n[t] * sizeof(float))) {
      CHECK(0, "%s: %s missing from the consumer's output", what,
            bf->out_name[t]);
      free(theirs);
      return -1;
    }
    const int64_t at = first_diff(theirs, bf->out[t], n[t]);
    CHECK(at < 0,
          "%s: %s differs between %s and today's header at %lld: %.9g vs "
          "%.9g",
          what, bf->out_name[t], name, (long long)at,
          at < 0 ? 0.0 : (double)theirs[at],
          at < 0 ? 0.0 : (double)bf->out[t][at]);
    free(theirs);
  }
  return 0;
}

/* Case c on isa through today's header, compared with the consumer's record
 * of it (next in f) and checked against the oracle. -1 when the record is
 * missing or does not fit: the rest of f cannot be read. */
static int compare_run(FILE *f, const char *name, int c, int isa) {
  char what[128];
  snprintf(what, sizeof what, "case %s, isa %s", abi_case_name(c),
           attn_isa_name((attn_isa)isa));
  int32_t hdr[4];
  int64_t n[ABI_NUM_OUT];
  if (!get(f, hdr, sizeof hdr) || !get(f, n, sizeof n) || hdr[0] != c ||
      hdr[1] != isa) {
    CHECK(0, "%s: missing from the output of %s", what, name);
    return -1;
  }
  attn_params p;
  abi_bufs bf;
  attn_status s1, s2;
  attn_params_init(&p);
  abi_build(c, &bf, &p);
  abi_run(c, &bf, &p, (attn_isa)isa, &s1, &s2);
  CHECK(s1 == ATTN_OK && s2 == ATTN_OK,
        "%s: today's header: statuses %d, %d (%s)", what, (int)s1, (int)s2,
        bf.why);
  CHECK(hdr[2] == (int32_t)s1 && hdr[3] == (int32_t)s2,
        "%s: %s got statuses (%d, %d), today's header (%d, %d)", what, name,
        (int)hdr[2], (int)hdr[3], (int)s1, (int)s2);
  if (memcmp(n, bf.n_out, sizeof n) != 0) {
    CHECK(0, "%s: the sizes of the results of %s differ", what, name);
    abi_bufs_free(&bf);
    return -1;
  }
  if (compare_outputs(f, what, name, n, &bf) != 0) {
    abi_bufs_free(&bf);
    return -1;
  }
  if (s1 == ATTN_OK && s2 == ATTN_OK) {
    if (c >= ABI_NUM_CASES &&
        abi_cases_0_3[c - ABI_NUM_CASES].kind == ABI_KV_CACHE)
      check_oracle_kv(&abi_cases_0_3[c - ABI_NUM_CASES], &bf, &p, what);
    else
      check_oracle(&p, what);
  }
  abi_bufs_free(&bf);
  return 0;
}

/* Cases 0 .. ncases - 1 on every supported ISA, in the consumer's order;
 * the number of runs compared, or -1 when f ended or went wrong before the
 * last. */
static int compare_all_runs(FILE *f, const char *name, int ncases) {
  int runs = 0;
  for (int c = 0; c < ncases; c++) {
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
      if (!attn_isa_supported((attn_isa)isa))
        continue;
      if (compare_run(f, name, c, isa) != 0)
        return -1;
      runs++;
    }
  }
  return runs;
}

static void part1(const char *consumer, const char *name, size_t want,
                  int ncases) {
  char path[512];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/attn_abi_%s_%ld.bin",
           tmp && *tmp ? tmp : "/tmp", name, (long)getpid());
  const int rc = run_consumer(consumer, path);
  CHECK(rc == 0, "abi_%s exited with %d (its FAIL lines above)", name, rc);
  FILE *f = fopen(path, "rb");
  if (!f) {
    CHECK(0, "abi_%s wrote no %s", name, path);
    return;
  }
  int runs = -1;
  if (read_consumer_header(f, path, want, ncases) == 0)
    runs = compare_all_runs(f, name, ncases);
  fclose(f);
  remove(path);
  if (runs >= 0)
    printf("part 1: %d runs of %s compared (bitwise) with today's header, "
           "and against the oracle\n",
           runs, name);
}

/* ---------------------------------------------------------------------- */
/* Part 2: sizes the library does not know                                */
/* ---------------------------------------------------------------------- */
#define PAT 0x5A

/* attn_params with room behind it, so that a library that wrongly reads
 * (or writes) up to the size it was given stays inside this object. */
typedef struct params_holder {
  attn_params p;
  unsigned char tail[128];
} params_holder;

typedef struct small_problem {
  float q[2 * 9 * 4 * 8], k[2 * 11 * 2 * 8], v[2 * 11 * 2 * 8];
  float o[2 * 9 * 4 * 8], lse[2 * 4 * 9], dout[2 * 9 * 4 * 8];
  float dq[2 * 9 * 4 * 8], dk[2 * 11 * 2 * 8], dv[2 * 11 * 2 * 8];
  char why[256];
} small_problem;

static void small_setup(small_problem *s, params_holder *h) {
  uint64_t seed = 42;
  memset(h, 0, sizeof *h);
  abi_fill(s->q, ATTN_DTYPE_F32, (int64_t)(sizeof s->q / 4), 1.0, &seed);
  abi_fill(s->k, ATTN_DTYPE_F32, (int64_t)(sizeof s->k / 4), 1.0, &seed);
  abi_fill(s->v, ATTN_DTYPE_F32, (int64_t)(sizeof s->v / 4), 1.0, &seed);
  abi_fill(s->dout, ATTN_DTYPE_F32, (int64_t)(sizeof s->dout / 4), 1.0, &seed);
  attn_params_init(&h->p);
  h->p.q = attn_tensor_bshd(s->q, ATTN_DTYPE_F32, 2, 9, 4, 8);
  h->p.k = attn_tensor_bshd(s->k, ATTN_DTYPE_F32, 2, 11, 2, 8);
  h->p.v = attn_tensor_bshd(s->v, ATTN_DTYPE_F32, 2, 11, 2, 8);
  h->p.o = attn_tensor_bshd(s->o, ATTN_DTYPE_F32, 2, 9, 4, 8);
  h->p.lse = s->lse;
  h->p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  h->p.num_threads = 1;
  h->p.dout = attn_tensor_bshd(s->dout, ATTN_DTYPE_F32, 2, 9, 4, 8);
  h->p.dq = attn_tensor_bshd(s->dq, ATTN_DTYPE_F32, 2, 9, 4, 8);
  h->p.dk = attn_tensor_bshd(s->dk, ATTN_DTYPE_F32, 2, 11, 2, 8);
  h->p.dv = attn_tensor_bshd(s->dv, ATTN_DTYPE_F32, 2, 11, 2, 8);
  h->p.error_message = s->why;
  h->p.error_message_size = sizeof s->why;
}

static int all_bytes(const void *mem, size_t n, unsigned char v) {
  const unsigned char *m = (const unsigned char *)mem;
  for (size_t i = 0; i < n; i++)
    if (m[i] != v)
      return 0;
  return 1;
}

enum { F_FWD, F_BWD, F_FWD_CHECK, F_BWD_CHECK, F_FWD_WS, F_BWD_WS, F_COUNT };
static const char *const fname[F_COUNT] = {
    "attn_forward_sized",
    "attn_backward_sized",
    "attn_forward_check_sized",
    "attn_backward_check_sized",
    "attn_forward_workspace_size_sized",
    "attn_backward_workspace_size_sized"};

static attn_status call(int fn, const attn_params *p, size_t size,
                        size_t *bytes) {
  switch (fn) {
  case F_FWD:
    return attn_forward_sized(NULL, p, size);
  case F_BWD:
    return attn_backward_sized(NULL, p, size);
  case F_FWD_CHECK:
    return attn_forward_check_sized(p, size);
  case F_BWD_CHECK:
    return attn_backward_check_sized(p, size);
  case F_FWD_WS:
    return attn_forward_workspace_size_sized(NULL, p, size, bytes);
  default:
    return attn_backward_workspace_size_sized(NULL, p, size, bytes);
  }
}

/* fname[fn] with an unknown size: ATTN_ERR_ABI, no output written, and a
 * reason in error_message exactly when the size covers that field (printed
 * when print_reason is set). */
static void check_bad_size(int fn, size_t size, int print_reason,
                           small_problem *sp, const params_holder *h) {
  const size_t S01 = ATTN_PARAMS_SIZE_0_1;
  float o_before[sizeof sp->o / 4], lse_before[sizeof sp->lse / 4];
  memcpy(o_before, sp->o, sizeof sp->o);
  memcpy(lse_before, sp->lse, sizeof sp->lse);
  memset(sp->dq, PAT, sizeof sp->dq);
  memset(sp->dk, PAT, sizeof sp->dk);
  memset(sp->dv, PAT, sizeof sp->dv);
  memset(sp->why, 'x', sizeof sp->why);
  size_t bytes = 777;
  const attn_status st = call(fn, &h->p, size, &bytes);
  char sz[32];
  if (size == SIZE_MAX)
    snprintf(sz, sizeof sz, "SIZE_MAX");
  else
    snprintf(sz, sizeof sz, "%zu", size);
  CHECK(st == ATTN_ERR_ABI, "%s(size %s): status %d (%s), want %d", fname[fn],
        sz, (int)st, attn_strerror(st), (int)ATTN_ERR_ABI);
  const int wrote_outputs = memcmp(o_before, sp->o, sizeof sp->o) != 0 ||
                            memcmp(lse_before, sp->lse, sizeof sp->lse) != 0 ||
                            !all_bytes(sp->dq, sizeof sp->dq, PAT) ||
                            !all_bytes(sp->dk, sizeof sp->dk, PAT) ||
                            !all_bytes(sp->dv, sizeof sp->dv, PAT) ||
                            bytes != 777;
  CHECK(!wrote_outputs, "%s(size %s): wrote an output", fname[fn], sz);
  if (size > S01) {
    const char *nul = memchr(sp->why, '\0', sizeof sp->why);
    CHECK(nul != NULL && nul != sp->why && sp->why[0] != 'x',
          "%s(size %s): no NUL-terminated reason in error_message", fname[fn],
          sz);
    /* the reason lists every size the library knows */
    const size_t known[5] = {S01, ATTN_PARAMS_SIZE_0_2, ATTN_PARAMS_SIZE_0_3,
                             ATTN_PARAMS_SIZE_0_4, sizeof(attn_params)};
    static const char *const kname[5] = {"0.1", "0.2", "0.3", "0.4",
                                         "this release"};
    for (int i = 0; nul && i < 5; i++) {
      char want[64];
      snprintf(want, sizeof want, "%zu (%s)", known[i], kname[i]);
      CHECK(strstr(sp->why, want) != NULL,
            "%s(size %s): the reason \"%s\" does not name %s", fname[fn], sz,
            sp->why, want);
    }
    if (print_reason && nul)
      printf("part 2: message for SIZE_MAX: \"%s\"\n", sp->why);
  } else {
    CHECK(all_bytes(sp->why, sizeof sp->why, 'x'),
          "%s(size %s): wrote error_message although the size (below "
          "0.1's %zu) does not cover that field",
          fname[fn], sz, S01);
  }
}

/* fname[fn] with the known sizes (0.1's, 0.2's, 0.3's and today's):
 * ATTN_OK. */
static void check_good_sizes(int fn, small_problem *sp,
                             const params_holder *h) {
  const size_t good[5] = {ATTN_PARAMS_SIZE_0_1, ATTN_PARAMS_SIZE_0_2,
                          ATTN_PARAMS_SIZE_0_3, ATTN_PARAMS_SIZE_0_4,
                          sizeof(attn_params)};
  for (int i = 0; i < 5; i++) {
    size_t bytes = 0;
    memset(sp->why, 0, sizeof sp->why);
    const attn_status st = call(fn, &h->p, good[i], &bytes);
    CHECK(st == ATTN_OK, "%s(size %zu): status %d (%s)", fname[fn], good[i],
          (int)st, sp->why);
  }
}

/* The 0.3 size ignores the 0.4 fields, however invalid: NaN and +inf
 * sinks (read, they are ATTN_ERR_INVALID_ARGUMENT), dsinks pointing at a
 * guard (written, it would change), dropout_p 7, a seed. Forward (o_ref,
 * lse_ref: today's size without them), both checks, both workspace sizes,
 * the backward (against today's size without them) and attn_mask_compile
 * succeed with the results of a call without them, and nothing is written
 * into the struct or past it. */
static void check_03_ignores_04_fields(small_problem *sp,
                                       const params_holder *h,
                                       const float *o_ref,
                                       const float *lse_ref) {
  const size_t S03 = ATTN_PARAMS_SIZE_0_3, S = sizeof(attn_params);
  static const float bad_sinks[4] = {NAN, INFINITY, NAN, 1e30f};
  float dsinks[16];
  float dq_ref[sizeof sp->dq / 4], dk_ref[sizeof sp->dk / 4],
      dv_ref[sizeof sp->dv / 4];
  size_t ws_ref[2] = {0, 0}, ws[2] = {1, 1};
  attn_status st = attn_forward_workspace_size_sized(NULL, &h->p, S, ws_ref);
  attn_status st2 =
      attn_backward_workspace_size_sized(NULL, &h->p, S, &ws_ref[1]);
  CHECK(st == ATTN_OK && st2 == ATTN_OK, "workspace sizes: %s", sp->why);
  st = attn_backward_sized(NULL, &h->p, S);
  CHECK(st == ATTN_OK, "reference backward: %s", sp->why);
  memcpy(dq_ref, sp->dq, sizeof sp->dq);
  memcpy(dk_ref, sp->dk, sizeof sp->dk);
  memcpy(dv_ref, sp->dv, sizeof sp->dv);

  params_holder g = *h;
  g.p.sinks = bad_sinks;
  g.p.dsinks = dsinks;
  g.p.dropout_p = 7.0f;
  g.p.dropout_seed = 0xDEADBEEFCAFEF00Dull;
  memset(g.tail, 0xEE, sizeof g.tail);
  params_holder before;
  memcpy(&before, &g, sizeof g);
  memset(dsinks, PAT, sizeof dsinks);
  memset(sp->o, PAT, sizeof sp->o);
  memset(sp->lse, PAT, sizeof sp->lse);
  st = attn_forward_sized(NULL, &g.p, S03);
  CHECK(st == ATTN_OK && memcmp(o_ref, sp->o, sizeof sp->o) == 0 &&
            memcmp(lse_ref, sp->lse, sizeof sp->lse) == 0,
        "forward with the 0.3 size read the 0.4 fields (status %d: %s)",
        (int)st, sp->why);
  st = attn_forward_check_sized(&g.p, S03);
  CHECK(st == ATTN_OK, "forward check with the 0.3 size: status %d (%s)",
        (int)st, sp->why);
  st = attn_backward_check_sized(&g.p, S03);
  CHECK(st == ATTN_OK, "backward check with the 0.3 size: status %d (%s)",
        (int)st, sp->why);
  st = attn_forward_workspace_size_sized(NULL, &g.p, S03, ws);
  st2 = attn_backward_workspace_size_sized(NULL, &g.p, S03, &ws[1]);
  CHECK(st == ATTN_OK && st2 == ATTN_OK && ws[0] == ws_ref[0] &&
            ws[1] == ws_ref[1],
        "workspace sizes with the 0.3 size: statuses %d, %d, %zu and %zu "
        "bytes, want %zu and %zu",
        (int)st, (int)st2, ws[0], ws[1], ws_ref[0], ws_ref[1]);
  memset(sp->dq, PAT, sizeof sp->dq);
  memset(sp->dk, PAT, sizeof sp->dk);
  memset(sp->dv, PAT, sizeof sp->dv);
  st = attn_backward_sized(NULL, &g.p, S03);
  CHECK(st == ATTN_OK && memcmp(dq_ref, sp->dq, sizeof sp->dq) == 0 &&
            memcmp(dk_ref, sp->dk, sizeof sp->dk) == 0 &&
            memcmp(dv_ref, sp->dv, sizeof sp->dv) == 0,
        "backward with the 0.3 size read the 0.4 fields (status %d: %s)",
        (int)st, sp->why);
  CHECK(all_bytes(dsinks, sizeof dsinks, PAT),
        "backward with the 0.3 size wrote dsinks");
  attn_mask *m = NULL;
  st = attn_mask_compile_sized(&g.p, S03, &m);
  CHECK(st == ATTN_OK && m != NULL,
        "attn_mask_compile with the 0.3 size: status %d (%s)", (int)st,
        sp->why);
  attn_mask_free(m);
  CHECK(memcmp(&before, &g, sizeof g) == 0,
        "a call with the 0.3 size wrote into attn_params or past it");
}

/* A call with an old size ignores the fields appended after it, whatever
 * they hold. */
/* A score_mod for the 0.5 fields' checks. */
static float abi_identity_mod(float s, int64_t b, int64_t h, int64_t i,
                              int64_t j, void *user) {
  (void)b, (void)h, (void)i, (void)j, (void)user;
  return s;
}

static void check_old_sizes_ignore_new_fields(small_problem *sp,
                                              const params_holder *h) {
  const size_t S01 = ATTN_PARAMS_SIZE_0_1, S = sizeof(attn_params);
  float o_ref[sizeof sp->o / 4], lse_ref[sizeof sp->lse / 4];
  CHECK(attn_forward_sized(NULL, &h->p, S) == ATTN_OK, "forward: %s", sp->why);
  memcpy(o_ref, sp->o, sizeof sp->o);
  memcpy(lse_ref, sp->lse, sizeof sp->lse);
  /* 0.2's, 0.3's and 0.4's fields, the last two invalid */
  static const float nan_sinks[4] = {NAN, NAN, NAN, NAN};
  params_holder g = *h;
  g.p.q_pos_offset = 1000;
  g.p.k_pos_offset = -7;
  g.p.prefix_len = 3;
  g.p.rel_bias = (const float *)sp;
  g.p.rel_buckets = -5;
  g.p.sinks = nan_sinks;
  g.p.dropout_p = 7.0f;
  memset(sp->o, PAT, sizeof sp->o);
  memset(sp->lse, PAT, sizeof sp->lse);
  attn_status st = attn_forward_sized(NULL, &g.p, S01);
  CHECK(st == ATTN_OK && memcmp(o_ref, sp->o, sizeof sp->o) == 0 &&
            memcmp(lse_ref, sp->lse, sizeof sp->lse) == 0,
        "forward with the 0.1 size read the later fields (status %d)", (int)st);
  st = attn_backward_check_sized(&g.p, S01);
  CHECK(st == ATTN_OK, "backward check with the 0.1 size: status %d", (int)st);

  /* The 0.2 size ignores the 0.3 fields (T5 bias) and the 0.4 ones,
   * however invalid. */
  g = *h;
  g.p.rel_bias = (const float *)sp; /* would be read if honoured */
  g.p.rel_buckets = -5;
  g.p.drel_bias = (float *)sp->o;
  g.p.sinks = nan_sinks;
  g.p.dropout_p = 7.0f;
  memset(sp->o, PAT, sizeof sp->o);
  memset(sp->lse, PAT, sizeof sp->lse);
  st = attn_forward_sized(NULL, &g.p, ATTN_PARAMS_SIZE_0_2);
  CHECK(st == ATTN_OK && memcmp(o_ref, sp->o, sizeof sp->o) == 0 &&
            memcmp(lse_ref, sp->lse, sizeof sp->lse) == 0,
        "forward with the 0.2 size read the later fields (status %d)", (int)st);
  st = attn_backward_check_sized(&g.p, ATTN_PARAMS_SIZE_0_2);
  CHECK(st == ATTN_OK, "backward check with the 0.2 size: status %d", (int)st);
  check_03_ignores_04_fields(sp, h, o_ref, lse_ref);

  /* The 0.4 size ignores the 0.5 fields (sparse patterns, user
   * functions), however invalid: a global index past the keys, an unknown
   * sparse_kind, a block mask of the wrong shape, score_mod without its
   * derivative: the forward, the backward's check and attn_mask_compile
   * succeed with the results of a call without them. */
  static const int32_t bad_global[2] = {-3, 1 << 30};
  g = *h;
  g.p.global_idx = bad_global;
  g.p.global_count = 2;
  g.p.sparse_kind = 99;
  g.p.block_mask = attn_tensor_contiguous(sp, ATTN_DTYPE_BOOL, 1, 1, 3, 3);
  g.p.block_q = -1;
  g.p.score_mod = abi_identity_mod; /* without score_mod_grad */
  memset(sp->o, PAT, sizeof sp->o);
  memset(sp->lse, PAT, sizeof sp->lse);
  st = attn_forward_sized(NULL, &g.p, ATTN_PARAMS_SIZE_0_4);
  CHECK(st == ATTN_OK && memcmp(o_ref, sp->o, sizeof sp->o) == 0 &&
            memcmp(lse_ref, sp->lse, sizeof sp->lse) == 0,
        "forward with the 0.4 size read the 0.5 fields (status %d: %s)",
        (int)st, sp->why);
  st = attn_backward_check_sized(&g.p, ATTN_PARAMS_SIZE_0_4);
  CHECK(st == ATTN_OK, "backward check with the 0.4 size: status %d (%s)",
        (int)st, sp->why);
  attn_mask *m4 = NULL;
  st = attn_mask_compile_sized(&g.p, ATTN_PARAMS_SIZE_0_4, &m4);
  CHECK(st == ATTN_OK, "attn_mask_compile with the 0.4 size: status %d (%s)",
        (int)st, sp->why);
  attn_mask_free(m4);
  /* and today's size refuses them, with the reason */
  st = attn_forward_check_sized(&g.p, sizeof(attn_params));
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT && strstr(sp->why, "global_idx"),
        "today's size with invalid 0.5 fields: status %d (%s)", (int)st,
        sp->why);
}

/* Today's size with invalid 0.4 fields: the documented statuses (a NaN or
 * +inf sink, dropout_p outside [0, 1): ATTN_ERR_INVALID_ARGUMENT) from
 * every call that takes attn_params, a reason naming the field, and no
 * output written; -inf sinks (no sink) and dropout_p in [0, 1) pass the
 * checks. */
static void check_invalid_04_fields(small_problem *sp, const params_holder *h) {
  static const float sink_nan[4] = {0.5f, -INFINITY, NAN, 0.0f};
  static const float sink_inf[4] = {INFINITY, 0.0f, 0.0f, 0.0f};
  static const float sink_none[4] = {-INFINITY, -INFINITY, -INFINITY,
                                     -INFINITY};
  static const struct {
    const char *what, *field;
    const float *sinks;
    float dropout_p;
  } bad[] = {
      {"a NaN sink", "sinks", sink_nan, 0.0f},
      {"a +inf sink", "sinks", sink_inf, 0.0f},
      {"dropout_p 7", "dropout_p", NULL, 7.0f},
      {"dropout_p 1", "dropout_p", NULL, 1.0f},
      {"dropout_p -0.25", "dropout_p", NULL, -0.25f},
      {"dropout_p NaN", "dropout_p", NULL, NAN},
  };
  const size_t S = sizeof(attn_params);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    params_holder g = *h;
    g.p.sinks = bad[i].sinks;
    g.p.dropout_p = bad[i].dropout_p;
    g.p.dropout_seed = 99;
    for (int fn = 0; fn < F_COUNT; fn++) {
      float o_before[sizeof sp->o / 4], lse_before[sizeof sp->lse / 4];
      memcpy(o_before, sp->o, sizeof sp->o);
      memcpy(lse_before, sp->lse, sizeof sp->lse);
      memset(sp->dq, PAT, sizeof sp->dq);
      memset(sp->dk, PAT, sizeof sp->dk);
      memset(sp->dv, PAT, sizeof sp->dv);
      memset(sp->why, 'x', sizeof sp->why);
      size_t bytes = 777;
      const attn_status st = call(fn, &g.p, S, &bytes);
      CHECK(st == ATTN_ERR_INVALID_ARGUMENT,
            "%s with %s: status %d (%s), want %d", fname[fn], bad[i].what,
            (int)st, attn_strerror(st), (int)ATTN_ERR_INVALID_ARGUMENT);
      const char *nul = memchr(sp->why, '\0', sizeof sp->why);
      CHECK(nul != NULL && strstr(sp->why, bad[i].field) != NULL,
            "%s with %s: the reason does not name %s", fname[fn], bad[i].what,
            bad[i].field);
      CHECK(memcmp(o_before, sp->o, sizeof sp->o) == 0 &&
                memcmp(lse_before, sp->lse, sizeof sp->lse) == 0 &&
                all_bytes(sp->dq, sizeof sp->dq, PAT) &&
                all_bytes(sp->dk, sizeof sp->dk, PAT) &&
                all_bytes(sp->dv, sizeof sp->dv, PAT) && bytes == 777,
            "%s with %s: wrote an output", fname[fn], bad[i].what);
    }
  }
  params_holder g = *h;
  g.p.sinks = sink_none;
  attn_status st = attn_forward_check_sized(&g.p, S);
  CHECK(st == ATTN_OK, "forward check with -inf sinks: status %d (%s)", (int)st,
        sp->why);
  st = attn_backward_check_sized(&g.p, S);
  CHECK(st == ATTN_OK, "backward check with -inf sinks: status %d (%s)",
        (int)st, sp->why);
  g = *h;
  g.p.dropout_p = 0.999f;
  g.p.dropout_seed = UINT64_MAX;
  st = attn_forward_check_sized(&g.p, S);
  CHECK(st == ATTN_OK, "forward check with dropout_p 0.999: status %d (%s)",
        (int)st, sp->why);
  st = attn_backward_check_sized(&g.p, S);
  CHECK(st == ATTN_OK, "backward check with dropout_p 0.999: status %d (%s)",
        (int)st, sp->why);
}

/* attn_params_init_sized: nothing written with an unknown size, exactly the
 * given size (and the right defaults) with a known one. */
static void check_params_init_sized(const size_t *bad, int nbad) {
  const size_t S01 = ATTN_PARAMS_SIZE_0_1, S = sizeof(attn_params);
  for (int i = 0; i < nbad; i++) {
    params_holder buf;
    memset(&buf, PAT, sizeof buf);
    attn_params_init_sized(&buf.p, bad[i]);
    CHECK(all_bytes(&buf, sizeof buf, PAT),
          "attn_params_init_sized(size %zu) wrote into the struct", bad[i]);
  }
  params_holder buf;
  memset(&buf, PAT, sizeof buf);
  attn_params_init_sized(&buf.p, S01);
  CHECK(all_bytes((const char *)&buf + S01, sizeof buf - S01, PAT),
        "attn_params_init_sized(0.1 size) wrote past %zu bytes", S01);
  CHECK(buf.p.window_left == -1 && buf.p.window_right == -1 &&
            buf.p.q.data == NULL && buf.p.dbias.data == NULL,
        "attn_params_init_sized(0.1 size): wrong defaults");
  memset(&buf, PAT, sizeof buf);
  attn_params_init_sized(&buf.p, ATTN_PARAMS_SIZE_0_2);
  CHECK(all_bytes((const char *)&buf + ATTN_PARAMS_SIZE_0_2,
                  sizeof buf - ATTN_PARAMS_SIZE_0_2, PAT),
        "attn_params_init_sized(0.2 size) wrote past %zu bytes",
        ATTN_PARAMS_SIZE_0_2);
  CHECK(buf.p.prefix_len == -1 && buf.p.compiled_mask == NULL,
        "attn_params_init_sized(0.2 size): wrong defaults");
  memset(&buf, PAT, sizeof buf);
  attn_params_init_sized(&buf.p, ATTN_PARAMS_SIZE_0_3);
  CHECK(all_bytes((const char *)&buf + ATTN_PARAMS_SIZE_0_3,
                  sizeof buf - ATTN_PARAMS_SIZE_0_3, PAT),
        "attn_params_init_sized(0.3 size) wrote past %zu bytes (into the 0.4 "
        "fields)",
        ATTN_PARAMS_SIZE_0_3);
  CHECK(buf.p.prefix_len == -1 && buf.p.rel_bias == NULL &&
            buf.p.rel_buckets == 32 && buf.p.rel_max_distance == 128 &&
            buf.p.rel_bidirectional == 0 && buf.p.drel_bias == NULL,
        "attn_params_init_sized(0.3 size): wrong defaults");
  memset(&buf, PAT, sizeof buf);
  attn_params_init_sized(&buf.p, S);
  CHECK(all_bytes(buf.tail, sizeof buf.tail, PAT),
        "attn_params_init_sized(sizeof) wrote past the struct");
  CHECK(buf.p.prefix_len == -1 && buf.p.q_pos_offset == 0 &&
            buf.p.k_pos_offset == 0 && buf.p.q_pos_offsets == NULL &&
            buf.p.k_pos_offsets == NULL && buf.p.compiled_mask == NULL &&
            buf.p.window_left == -1 && buf.p.rel_bias == NULL &&
            buf.p.rel_buckets == 32 && buf.p.rel_max_distance == 128 &&
            buf.p.rel_bidirectional == 0 && buf.p.drel_bias == NULL,
        "attn_params_init_sized(sizeof): wrong defaults for 0.2/0.3 fields");
  CHECK(buf.p.sinks == NULL && buf.p.dsinks == NULL &&
            buf.p.dropout_p == 0.0f && buf.p.dropout_seed == 0,
        "attn_params_init_sized(sizeof): wrong defaults for the 0.4 fields");
  memset(&buf, PAT, sizeof buf);
  attn_params_init(&buf.p);
  CHECK(all_bytes(buf.tail, sizeof buf.tail, PAT) && buf.p.sinks == NULL &&
            buf.p.dsinks == NULL && buf.p.dropout_p == 0.0f &&
            buf.p.dropout_seed == 0,
        "attn_params_init: wrong defaults for the 0.4 fields, or wrote past "
        "the struct");
  attn_params_init_sized(NULL, S); /* must not crash */
}

/* attn_context_options_init_sized / attn_context_create_sized: an unknown
 * size writes nothing and gives ATTN_ERR_ABI with *out = NULL; sizeof
 * works. */
static void check_context_sized(void) {
  const size_t so = sizeof(attn_context_options);
  const size_t obad[] = {0, 1, so - 1, so + 8, so + 64, SIZE_MAX};
  for (size_t i = 0; i < sizeof obad / sizeof obad[0]; i++) {
    struct {
      attn_context_options o;
      unsigned char tail[128];
    } ob;
    memset(&ob, PAT, sizeof ob);
    attn_context_options_init_sized(&ob.o, obad[i]);
    CHECK(all_bytes(&ob, sizeof ob, PAT),
          "attn_context_options_init_sized(size %zu) wrote", obad[i]);
    memset(&ob, 0, sizeof ob);
    attn_context *ctx = (attn_context *)&ob; /* must be overwritten */
    const attn_status st = attn_context_create_sized(&ctx, &ob.o, obad[i]);
    CHECK(st == ATTN_ERR_ABI,
          "attn_context_create_sized(size %zu): status %d, want %d", obad[i],
          (int)st, (int)ATTN_ERR_ABI);
    CHECK(ctx == NULL,
          "attn_context_create_sized(size %zu): *out not set to NULL", obad[i]);
    if (st == ATTN_OK && ctx != (attn_context *)&ob)
      attn_context_free(ctx);
  }
  attn_context_options o;
  attn_context_options_init(&o);
  attn_context *ctx = NULL;
  CHECK(attn_context_create_sized(&ctx, &o, so) == ATTN_OK && ctx,
        "attn_context_create_sized(sizeof) failed");
  attn_context_free(ctx);
}

static void part2(void) {
  const size_t S01 = ATTN_PARAMS_SIZE_0_1, S = sizeof(attn_params);
  const size_t S02 = ATTN_PARAMS_SIZE_0_2, S03 = ATTN_PARAMS_SIZE_0_3;
  const size_t bad[] = {0,       1,       S01 - 8, S01 + 8, S02 - 8, S02 + 8,
                        S03 - 8, S03 + 8, S - 8,   S + 8,   S + 64,  SIZE_MAX};
  const int nbad = (int)(sizeof bad / sizeof bad[0]);
  static small_problem sp;
  static params_holder h;

  const char *msg = attn_strerror(ATTN_ERR_ABI);
  CHECK(msg && *msg, "attn_strerror(ATTN_ERR_ABI) is empty");

  /* A valid forward first: the backward calls below then have a valid LSE
   * and O, so a library that ignored the size would run, not crash. */
  small_setup(&sp, &h);
  CHECK(attn_forward(NULL, &h.p) == ATTN_OK, "small forward failed: %s",
        sp.why);

  for (int fn = 0; fn < F_COUNT; fn++) {
    for (int i = 0; i < nbad; i++)
      check_bad_size(fn, bad[i], fn == F_FWD && i == nbad - 1, &sp, &h);
    check_good_sizes(fn, &sp, &h);
  }
  check_old_sizes_ignore_new_fields(&sp, &h);
  check_invalid_04_fields(&sp, &h);
  check_params_init_sized(bad, nbad);
  check_context_sized();
  printf("part 2: unknown sizes checked\n");
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: test_abi PATH/TO/abi_consumer_0_1 "
                    "PATH/TO/abi_consumer_0_2 PATH/TO/abi_consumer_0_3 "
                    "PATH/TO/abi_consumer_0_4\n");
    return 2;
  }
  printf("libattn %s; attn_params: 0.1 = %zu bytes, 0.2 = %zu bytes, 0.3 = "
         "%zu bytes, 0.4 = %zu bytes, today = %zu bytes\n",
         attn_version_string(), ATTN_PARAMS_SIZE_0_1, ATTN_PARAMS_SIZE_0_2,
         ATTN_PARAMS_SIZE_0_3, ATTN_PARAMS_SIZE_0_4, sizeof(attn_params));
  part1(argv[1], "consumer_0_1", ATTN_PARAMS_SIZE_0_1, ABI_NUM_CASES);
  part1(argv[2], "consumer_0_2", ATTN_PARAMS_SIZE_0_2, ABI_NUM_CASES);
  part1(argv[3], "consumer_0_3", ATTN_PARAMS_SIZE_0_3, ABI_NUM_CASES_ALL);
  part1(argv[4], "consumer_0_4", ATTN_PARAMS_SIZE_0_4, ABI_NUM_CASES_ALL);
  part2();
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
