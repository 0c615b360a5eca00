/*
 * Test "abi" (include/attn.h, "ABI"): structs grow at the end and programs
 * keep working.
 *
 *   test_abi CONSUMER_0_1 CONSUMER_0_2
 *
 * Part 1, old programs on the new library. CONSUMER_0_1 is
 * abi_consumer_0_1, built against libattn 0.1's attn.h (tests/abi/
 * attn_0_1.h), CONSUMER_0_2 the same program built against 0.2's
 * (attn_0_2.h), both linked against today's libattn.so. Each It runs every case
 * of abi_cases.h (MHA, GQA, causal both ways, bias + dbias, kv_lens, ALiBi,
 * window, softcap, bf16, a context, a caller workspace) through the 0.1 entry
 * points and writes its results; this program, built against today's attn.h and
 * linked against the same libattn.so, makes the same calls through the sized
 * entry points and requires the two to be bitwise equal, and its own results to
 * pass the double-precision oracle (tests/oracle.c, oracle_bwd.c: the forward
 * and backward tests' rule, err <= 2 * naive f32 + floor).
 *
 * Part 2, sizes the library does not know. attn_forward_sized,
 * attn_backward_sized, attn_forward_check_sized, attn_backward_check_sized
 * and both *_workspace_size_sized with sizes 0, 1, ATTN_PARAMS_SIZE_0_1 - 8,
 * ATTN_PARAMS_SIZE_0_1 + 8, sizeof(attn_params) - 8, sizeof + 8, sizeof + 64
 * and SIZE_MAX must return ATTN_ERR_ABI, write no output, and, when the size
 * is above ATTN_PARAMS_SIZE_0_1 (so the caller's error_message field is
 * there), a NUL-terminated reason; below it the message buffer is not
 * touched either (0.2's size +- 8 too). attn_params_init_sized and
 * attn_context_options_init_sized with such a size write nothing; with a known
 * size exactly that many bytes. attn_context_create_sized with a bad size:
 * ATTN_ERR_ABI. A call with the 0.1 size ignores whatever lies in the appended
 * 0.2 and 0.3 fields, one with the 0.2 size whatever lies in the 0.3 fields.
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
/* Part 1: the 0.1 consumer                                               */
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
  const float *got[4] = {(const float *)p->dq.data, (const float *)p->dk.data,
                         (const float *)p->dv.data,
                         (const float *)p->dbias.data};
  static const char *const gname[4] = {"dq", "dk", "dv", "dbias"};
  double gmax_all = 0;
  for (int t = 0; t < 4; t++)
    if (g.gmax[t] > gmax_all)
      gmax_all = g.gmax[t];
  for (int t = 0; t < 4; t++) {
    if (g.n[t] == 0)
      continue;
    double err = 0, en = 0;
    int64_t bad = 0;
    int finite = 1;
    for (int64_t i = 0; i < g.n[t]; i++) {
      const double e = fabs((double)got[t][i] - g.g[t][i]);
      if (!isfinite(got[t][i]))
        finite = 0;
      if (e > err)
        err = e, bad = i;
      const double e2 = fabs((double)gn.g[t][i] - g.g[t][i]);
      if (e2 > en)
        en = e2;
    }
    const double allowed = 2 * en + 1e-5 * gmax_all + 1e-7;
    CHECK(finite && err <= allowed,
          "%s: %s vs oracle: err %.3g at %lld (got %.9g want %.9g) > 2 * "
          "naive %.3g + floor",
          what, gname[t], err, (long long)bad, (double)got[t][bad], g.g[t][bad],
          en);
  }
  oracle_grads_free(&g);
  oracle_grads_free(&gn);
}

/* The consumer's header: its magic and its sizeof(attn_params), which must
 * be `want` (its release's). 0 when the header could be read. */
static int read_consumer_header(FILE *f, const char *path, size_t want) {
  uint32_t magic = 0;
  uint64_t psize = 0;
  if (!get(f, &magic, sizeof magic) || !get(f, &psize, sizeof psize) ||
      magic != ABI_MAGIC) {
    CHECK(0, "%s: bad header", path);
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

/* The consumer's o, lse, dq, dk, dv, dbias of one run (n[t] floats each, in
 * f) against today's in bf, bitwise. -1 when one is missing from f. */
static int compare_outputs(FILE *f, const char *what, const int64_t n[6],
                           const abi_bufs *bf) {
  static const char *const names[6] = {"o", "lse", "dq", "dk", "dv", "dbias"};
  const float *mine[6] = {bf->o, bf->lse, bf->dq, bf->dk, bf->dv, bf->dbias};
  for (int t = 0; t < 6; t++) {
    if (n[t] == 0)
      continue;
    float *theirs = malloc((size_t)n[t] * sizeof(float));
    if (!theirs || !get(f, theirs, (size_t)n[t] * sizeof(float))) {
      CHECK(0, "%s: %s missing from the consumer's output", what, names[t]);
      free(theirs);
      return -1;
    }
    const int64_t at = first_diff(theirs, mine[t], n[t]);
    CHECK(at < 0,
          "%s: %s differs between the 0.1 consumer and today's header at "
          "%lld: %.9g vs %.9g",
          what, names[t], (long long)at, at < 0 ? 0.0 : (double)theirs[at],
          at < 0 ? 0.0 : (double)mine[t][at]);
    free(theirs);
  }
  return 0;
}

/* Case c on isa through today's header, compared with the consumer's record
 * of it (next in f) and checked against the oracle. -1 when the record is
 * missing or does not fit: the rest of f cannot be read. */
static int compare_run(FILE *f, int c, int isa) {
  char what[128];
  snprintf(what, sizeof what, "case %s, isa %s", abi_cases[c].name,
           attn_isa_name((attn_isa)isa));
  int32_t hdr[4];
  int64_t n[6];
  if (!get(f, hdr, sizeof hdr) || !get(f, n, sizeof n) || hdr[0] != c ||
      hdr[1] != isa) {
    CHECK(0, "%s: missing from the consumer's output", what);
    return -1;
  }
  attn_params p;
  abi_bufs bf;
  attn_status sf, sb;
  attn_params_init(&p);
  abi_case_build(&abi_cases[c], &bf, &p, abi_case_seed(c));
  abi_case_run(&abi_cases[c], &bf, &p, (attn_isa)isa, &sf, &sb);
  CHECK(sf == ATTN_OK && sb == ATTN_OK,
        "%s: today's header: forward %d, backward %d (%s)", what, (int)sf,
        (int)sb, bf.why);
  CHECK(hdr[2] == (int32_t)sf && hdr[3] == (int32_t)sb,
        "%s: 0.1 consumer got statuses (%d, %d), today's header (%d, %d)", what,
        (int)hdr[2], (int)hdr[3], (int)sf, (int)sb);
  const int64_t want[6] = {bf.n_o, bf.n_lse, bf.n_q, bf.n_k, bf.n_v, bf.n_bias};
  if (memcmp(n, want, sizeof n) != 0) {
    CHECK(0, "%s: the consumer's sizes differ", what);
    abi_bufs_free(&bf);
    return -1;
  }
  if (compare_outputs(f, what, n, &bf) != 0) {
    abi_bufs_free(&bf);
    return -1;
  }
  if (sf == ATTN_OK && sb == ATTN_OK)
    check_oracle(&p, what);
  abi_bufs_free(&bf);
  return 0;
}

/* Every case on every supported ISA, in the consumer's order; the number of
 * runs compared, or -1 when f ended or went wrong before the last. */
static int compare_all_runs(FILE *f) {
  int runs = 0;
  for (int c = 0; c < ABI_NUM_CASES; c++) {
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
      if (!attn_isa_supported((attn_isa)isa))
        continue;
      if (compare_run(f, c, isa) != 0)
        return -1;
      runs++;
    }
  }
  return runs;
}

static void part1(const char *consumer, const char *name, size_t want) {
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
  if (read_consumer_header(f, path, want) == 0)
    runs = compare_all_runs(f);
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
    if (print_reason && nul)
      printf("part 2: message for SIZE_MAX: \"%s\"\n", sp->why);
  } else {
    CHECK(all_bytes(sp->why, sizeof sp->why, 'x'),
          "%s(size %s): wrote error_message although the size (below "
          "0.1's %zu) does not cover that field",
          fname[fn], sz, S01);
  }
}

/* fname[fn] with the known sizes (0.1's and today's): ATTN_OK. */
static void check_good_sizes(int fn, small_problem *sp,
                             const params_holder *h) {
  const size_t good[3] = {ATTN_PARAMS_SIZE_0_1, ATTN_PARAMS_SIZE_0_2,
                          sizeof(attn_params)};
  for (int i = 0; i < 3; i++) {
    size_t bytes = 0;
    memset(sp->why, 0, sizeof sp->why);
    const attn_status st = call(fn, &h->p, good[i], &bytes);
    CHECK(st == ATTN_OK, "%s(size %zu): status %d (%s)", fname[fn], good[i],
          (int)st, sp->why);
  }
}

/* A 0.1-sized call ignores the appended fields, whatever they hold. */
static void check_01_ignores_new_fields(small_problem *sp,
                                        const params_holder *h) {
  const size_t S01 = ATTN_PARAMS_SIZE_0_1, S = sizeof(attn_params);
  float o_ref[sizeof sp->o / 4], lse_ref[sizeof sp->lse / 4];
  CHECK(attn_forward_sized(NULL, &h->p, S) == ATTN_OK, "forward: %s", sp->why);
  memcpy(o_ref, sp->o, sizeof sp->o);
  memcpy(lse_ref, sp->lse, sizeof sp->lse);
  params_holder g = *h;
  g.p.q_pos_offset = 1000;
  g.p.k_pos_offset = -7;
  g.p.prefix_len = 3;
  memset(sp->o, PAT, sizeof sp->o);
  memset(sp->lse, PAT, sizeof sp->lse);
  attn_status st = attn_forward_sized(NULL, &g.p, S01);
  CHECK(st == ATTN_OK && memcmp(o_ref, sp->o, sizeof sp->o) == 0 &&
            memcmp(lse_ref, sp->lse, sizeof sp->lse) == 0,
        "forward with the 0.1 size read the 0.2 fields (status %d)", (int)st);
  st = attn_backward_check_sized(&g.p, S01);
  CHECK(st == ATTN_OK, "backward check with the 0.1 size: status %d", (int)st);

  /* The 0.2 size ignores the 0.3 fields (T5 bias), however invalid. */
  g = *h;
  g.p.rel_bias = (const float *)sp; /* would be read if honoured */
  g.p.rel_buckets = -5;
  g.p.drel_bias = (float *)sp->o;
  memset(sp->o, PAT, sizeof sp->o);
  memset(sp->lse, PAT, sizeof sp->lse);
  st = attn_forward_sized(NULL, &g.p, ATTN_PARAMS_SIZE_0_2);
  CHECK(st == ATTN_OK && memcmp(o_ref, sp->o, sizeof sp->o) == 0 &&
            memcmp(lse_ref, sp->lse, sizeof sp->lse) == 0,
        "forward with the 0.2 size read the 0.3 fields (status %d)", (int)st);
  st = attn_backward_check_sized(&g.p, ATTN_PARAMS_SIZE_0_2);
  CHECK(st == ATTN_OK, "backward check with the 0.2 size: status %d", (int)st);
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
  const size_t S02 = ATTN_PARAMS_SIZE_0_2;
  const size_t bad[] = {0,       1,     S01 - 8, S01 + 8, S02 - 8,
                        S02 + 8, S - 8, S + 8,   S + 64,  SIZE_MAX};
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
  check_01_ignores_new_fields(&sp, &h);
  check_params_init_sized(bad, nbad);
  check_context_sized();
  printf("part 2: unknown sizes checked\n");
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_abi PATH/TO/abi_consumer_0_1 "
                    "PATH/TO/abi_consumer_0_2\n");
    return 2;
  }
  printf("libattn %s; attn_params: 0.1 = %zu bytes, 0.2 = %zu bytes, today = "
         "%zu bytes\n",
         attn_version_string(), ATTN_PARAMS_SIZE_0_1, ATTN_PARAMS_SIZE_0_2,
         sizeof(attn_params));
  part1(argv[1], "consumer_0_1", ATTN_PARAMS_SIZE_0_1);
  part1(argv[2], "consumer_0_2", ATTN_PARAMS_SIZE_0_2);
  part2();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
