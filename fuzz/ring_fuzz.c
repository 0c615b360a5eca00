/*
 * ring_fuzz.c - libFuzzer target for ring attention over MPI
 * (include/attn/ring.h: attn_ring_partition, attn_ring_forward,
 * attn_ring_backward) on one process: MPI is initialised once (the Open MPI
 * environment for running as root without mpirun is set here, so nothing
 * else is needed) and the ring runs on communicators of size 1
 * (MPI_COMM_WORLD, MPI_COMM_SELF, or one split from MPI_COMM_WORLD). On one
 * rank both layouts hold the whole sequence in order, but the ring still
 * plans, skips and computes its (query chunk, key chunk) pairs (zig-zag: 2 x
 * 2 of them) with global positions and merges them by LSE.
 *
 * Draws: batch 1..2, heads_kv 1..3 with GQA groups 1..3, sequence 1..300
 * (tile edges likely; long ones shortened to a work budget, below), head
 * dims 1..16 (dv may differ), f32/bf16/f16 slices in bshd or bhsd memory, both
 * layouts, causal (both alignments), windows, prefix-LM, scale, softcap, ALiBi,
 * T5, sinks (some -inf), kv_lens, packed documents (cu_seqlens), position
 * offsets, 1 or 2 threads; and, from one byte, one invalid call: NULL operands
 * or params, an unknown layout, MPI_COMM_NULL, an unknown params size, an
 * output of the wrong shape, outputs over inputs or each other, NaN / +inf
 * sinks, unsupported options (dropout, bias, sparse patterns), bad kv_lens or
 * cu_seqlens, bad shapes and dtypes; in the backward NULL gradients,
 * gradients of the wrong shape or over inputs, dsinks without sinks.
 * Besides, attn_ring_partition on hostile arguments.
 *
 * Checks:
 * - no crash, sanitizer report or hang;
 * - an invalid call returns a status other than ATTN_OK with a message and
 *   writes nothing (outputs keep their fill); a call whose whole-sequence
 *   attn_forward_check fails must fail too; a valid one returns ATTN_OK;
 * - the forward's O and LSE against the double oracle of tests/oracle_fwd.h
 *   with the project's rule (as tests/ring/test_ring.c does), and within
 *   2 (2 err_naive + floor) of single-process attn_forward on the same
 *   inputs (test_ring.c's bound: both within the oracle's tolerance; on one
 *   rank the ring's pair split and LSE merge are not bitwise the single
 *   call, docs/decisions.md "Numerics");
 * - the backward's dQ, dK, dV (and drel_bias) against tests/oracle_bwd.h
 *   the same way, dsinks finite;
 * - 1 and 2 threads give the same bits, forward and backward;
 * - attn_ring_partition: the documented ranges (balanced contiguous; zig-zag
 *   chunks r and 2R-1-r of 2R), disjoint and covering [0, S) over the
 *   ranks; bad arguments refused.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn/ring.h"
#include "carve.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RING_LSAN 1
#endif
#endif
#if !defined(RING_LSAN) && defined(__SANITIZE_ADDRESS__)
#define RING_LSAN 1
#endif
#ifdef RING_LSAN
#include <sanitizer/lsan_interface.h>
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, long long id, const char *msg) {
  fprintf(stderr, "ring_fuzz: %s (%lld): %s\n", what, id, msg ? msg : "");
  abort();
}

static void *xcalloc(int64_t n, size_t es) {
  void *p = calloc((size_t)(n > 0 ? n : 1), es);
  if (p == NULL)
    abort();
  return p;
}

/* ---- MPI, once per process -------------------------------------------- */

static MPI_Comm g_split = MPI_COMM_NULL; /* size 1, split from WORLD */

static void mpi_up(void) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (inited)
    return;
  /* Open MPI as root without mpirun (tests/CMakeLists.txt's
   * ATTN_MPI_TEST_ENV); values already set are kept */
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
#ifdef RING_LSAN
  __lsan_disable(); /* Open MPI's allocations at MPI_Init outlive it */
#endif
  MPI_Init(NULL, NULL);
  MPI_Comm_split(MPI_COMM_WORLD, 0, 0, &g_split);
#ifdef RING_LSAN
  __lsan_enable();
#endif
  /* No MPI_Finalize at exit: it unloads Open MPI's components, whose
   * leaked allocations LeakSanitizer then cannot attribute (suppress). */
}

#ifdef RING_LSAN
/* Open MPI's own allocations (its components, strings of its environment)
 * outlive the process's use of MPI; the library's are not suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\n"
         "leak:libpmix.so\nleak:libhwloc.so\nleak:libevent\nleak:mca_\n"
         "leak:__vasprintf_internal\n";
}
#endif

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mpi_up();
  return 0;
}

/* ---- attn_ring_partition ---------------------------------------------- */

static void check_partition(bytes *in) {
  const int layout = (int)take(in, 3); /* 2: unknown */
  int64_t S = take(in, 256) | take(in, 256) << 8;
  switch (take(in, 4)) {
  case 0:
    S = S % 40;
    break;
  case 1:
    S = INT64_MAX - S;
    break;
  case 2:
    S = -1 - S % 3;
    break;
  default:
    break;
  }
  int R = (int)take(in, 70) - 2, r = (int)take(in, 72) - 2;
  if (take(in, 16) == 0)
    R = INT32_MAX - (R < 0 ? 0 : R);
  int64_t st[2] = {-7, -7}, ln[2] = {-7, -7};
  int n = -7;
  if (attn_ring_partition((attn_ring_layout)layout, S, R, r, st, NULL, &n) ==
          ATTN_OK ||
      attn_ring_partition((attn_ring_layout)layout, S, R, r, NULL, ln, &n) ==
          ATTN_OK ||
      attn_ring_partition((attn_ring_layout)layout, S, R, r, st, ln, NULL) ==
          ATTN_OK)
    die("partition with a NULL output", 0, "ATTN_OK");
  const attn_status s =
      attn_ring_partition((attn_ring_layout)layout, S, R, r, st, ln, &n);
  const int valid = layout < 2 && S >= 0 && R >= 1 && r >= 0 && r < R;
  if (!valid) {
    if (s == ATTN_OK)
      die("partition of bad arguments", layout, "ATTN_OK");
    return;
  }
  if (s != ATTN_OK)
    die("partition of good arguments", layout, attn_strerror(s));
  if (n != (layout == ATTN_RING_CONTIGUOUS ? 1 : 2))
    die("partition: number of ranges", n, "");
  for (int i = 0; i < n; i++)
    if (st[i] < 0 || ln[i] < 0 || st[i] > S || ln[i] > S - st[i])
      die("partition: range outside the sequence", i, "");
  /* the documented split (balanced; chunk c of 2R) */
  const int64_t parts = layout == ATTN_RING_CONTIGUOUS ? R : 2 * (int64_t)R;
  const int64_t base = S / parts, rem = S % parts;
  for (int i = 0; i < n; i++) {
    const int64_t c = i == 0 ? r : 2 * (int64_t)R - 1 - r;
    if (st[i] != c * base + (c < rem ? c : rem) ||
        ln[i] != base + (c < rem ? 1 : 0))
      die("partition: not the documented range", c, "");
  }
  if (R > 64)
    return;
  /* every rank: disjoint ranges covering [0, S) */
  int64_t covered = 0;
  unsigned char seen[128] = {0};
  for (int q = 0; q < R; q++) {
    int64_t a[2], l[2];
    int m = 0;
    if (attn_ring_partition((attn_ring_layout)layout, S, R, q, a, l, &m) !=
        ATTN_OK)
      die("partition of another rank", q, "");
    for (int i = 0; i < m; i++) {
      covered += l[i];
      const int64_t c = i == 0 ? q : 2 * (int64_t)R - 1 - q;
      if (seen[c]++)
        die("partition: a chunk held twice", c, "");
    }
  }
  if (covered != S)
    die("partition: ranges do not sum to the sequence", covered, "");
}

/* ---- one ring call ----------------------------------------------------- */

enum {
  K_VALID = 0,
  K_NULL_OPERAND,
  K_NULL_PARAMS,
  K_LAYOUT,
  K_COMM_NULL,
  K_ABI,
  K_O_SHAPE,
  K_O_OVERLAP,
  K_SINK_BAD,
  K_UNSUPPORTED,
  K_KV_LENS,
  K_CU_SEQLENS,
  K_SHAPE,
  K_DTYPE,
  K_B_NULL,
  K_B_SHAPE,
  K_B_OVERLAP,
  K_B_DSINKS,
  K_N
};

typedef struct rcase {
  int64_t B, S, hq, hkv, d, dv;
  attn_dtype dt;
  int bhsd, bad, threads_first;
  attn_ring_layout layout;
  uint64_t seed;
  int32_t cu[6], kvl[5];
  float slopes[12], sinks[12], rel[32 * 12];
} rcase;

static size_t es_of(attn_dtype t) { return t == ATTN_DTYPE_F32 ? 4 : 2; }

static void put(void *p, attn_dtype dt, int64_t i, float f) {
  if (dt == ATTN_DTYPE_F32)
    ((float *)p)[i] = f;
  else if (dt == ATTN_DTYPE_BF16)
    ((uint16_t *)p)[i] = attn_f32_to_bf16(f);
  else
    ((uint16_t *)p)[i] = attn_f32_to_f16(f);
}

static void *make(int64_t n, attn_dtype dt, uint64_t *s) {
  void *p = xcalloc(n, es_of(dt));
  for (int64_t i = 0; i < n; i++)
    put(p, dt, i, frand(s));
  return p;
}

static attn_tensor view(void *p, attn_dtype dt, int bhsd, int64_t B, int64_t n,
                        int64_t h, int64_t w) {
  return bhsd ? attn_tensor_bhsd(p, dt, B, n, h, w)
              : attn_tensor_bshd(p, dt, B, n, h, w);
}

/* max |a - b| over [B, n, h, w] views of two tensors (equal infinities 0) */
static double tdiff(const attn_tensor *a, const attn_tensor *b) {
  double m = 0;
  for (int64_t x = 0; x < a->shape[0]; x++)
    for (int64_t i = 0; i < a->shape[1]; i++)
      for (int64_t h = 0; h < a->shape[2]; h++)
        for (int64_t c = 0; c < a->shape[3]; c++) {
          const double u = oracle_tensor_get(a, x, i, h, c),
                       v = oracle_tensor_get(b, x, i, h, c);
          if (isinf(u) && u == v)
            continue;
          const double dd = fabs(u - v);
          if (!(dd <= m))
            m = dd;
        }
  return m;
}

static double adiff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isinf(a[i]) && a[i] == b[i])
      continue;
    const double dd = fabs((double)a[i] - b[i]);
    if (!(dd <= m))
      m = dd;
  }
  return m;
}

#define FILL 0xA5

/* An output buffer filled with FILL, for "writes nothing". */
typedef struct obuf {
  unsigned char *p;
  size_t n;
} obuf;

static obuf oalloc(size_t n) {
  obuf b = {xcalloc((int64_t)n, 1), n};
  memset(b.p, FILL, b.n);
  return b;
}

static void untouched(const obuf *b, const char *what) {
  for (size_t i = 0; i < b->n; i++)
    if (b->p[i] != FILL)
      die("a failing call wrote an output", (long long)i, what);
}

static attn_status ring_call(int bwd, MPI_Comm comm, const attn_ring_opts *ro,
                             const attn_params *p, size_t size) {
  return bwd ? attn_ring_backward_sized(NULL, comm, ro, p, size)
             : attn_ring_forward_sized(NULL, comm, ro, p, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mpi_up();
  bytes in = {data, size};
  check_partition(&in);

  rcase c;
  memset(&c, 0, sizeof c);
  c.bad = (int)take(&in, 2 * K_N);
  if (c.bad >= K_N)
    c.bad = K_VALID;
  c.B = 1 + take(&in, 2);
  c.hkv = 1 + take(&in, 3);
  c.hq = c.hkv * (1 + take(&in, 3));
  static const int64_t dims[8] = {1, 2, 3, 4, 5, 8, 16, 7};
  c.d = dims[take(&in, 8)];
  c.dv = take(&in, 2) ? c.d : dims[take(&in, 8)];
  const int64_t sbyte = take(&in, 256);
  static const int64_t edges[8] = {47, 48, 49, 63, 64, 65, 129, 300};
  c.S = sbyte < 200 ? 1 + sbyte % 40 : edges[sbyte % 8] - take(&in, 2);
  /* The double oracles' forward and backward cost ~ B hq S^2 (d + dv)
   * operations and took three quarters of an execution: long sequences are
   * shortened to a budget of 2^17 (S = 129 with B hq (d + dv) <= 7, S = 64
   * up to 32, S = 48 up to 56: every chunk and tile edge stays
   * reachable; fuzz/RESULTS.md gives the rates). */
  const int64_t per_s2 = c.B * c.hq * (c.d + c.dv);
  while (c.S > 1 && c.S * c.S * per_s2 > ((int64_t)1 << 17))
    c.S = c.S * 7 / 8;
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  c.dt = dts[take(&in, 6) % 3 == 0 && take(&in, 2) ? 1 + take(&in, 2) : 0];
  c.bhsd = (int)take(&in, 2);
  c.layout = (attn_ring_layout)take(&in, 2);
  c.threads_first = 1 + (int)take(&in, 2);
  const int comm_pick = (int)take(&in, 3);
  const MPI_Comm comm = comm_pick == 0   ? MPI_COMM_WORLD
                        : comm_pick == 1 ? MPI_COMM_SELF
                                         : g_split;

  attn_params p;
  attn_params_init(&p);
  p.causal = (attn_causal)take(&in, 3);
  const int64_t S = c.S, B = c.B, hq = c.hq, hkv = c.hkv, d = c.d, dv = c.dv;
  const unsigned opt = (unsigned)(take(&in, 256) | take(&in, 256) << 8);
  if (opt & 1)
    p.window_left = take(&in, S + 2);
  if (opt & 2)
    p.window_right = take(&in, S + 2);
  if (opt & 4)
    p.prefix_len = take(&in, S + 2);
  if (opt & 8)
    p.softcap = (float)(1 + take(&in, 30));
  if (opt & 16)
    p.scale = (float)(take(&in, 40) - 20) / 8.0f;
  if (opt & 32) {
    attn_alibi_slopes(hq, c.slopes);
    p.alibi_slopes = c.slopes;
  }
  if (opt & 64) {
    p.q_pos_offset = take(&in, 64) - (opt & 0x8000 ? 32 : 0);
    p.k_pos_offset = take(&in, 64);
  }
  c.seed = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 4; i++)
    c.seed = (c.seed ^ (uint64_t)take(&in, 256)) * 0x100000001B3ull;
  if (c.seed == 0)
    c.seed = 1;
  if (opt & 128) {
    for (int64_t h = 0; h < hq; h++)
      c.sinks[h] = h % 3 == 2 ? -INFINITY : 2.0f * frand(&c.seed);
    p.sinks = c.sinks;
  }
  if (opt & 256) {
    for (int i = 0; i < 32 * 12; i++)
      c.rel[i] = 0.5f * frand(&c.seed);
    p.rel_bias = c.rel;
    p.rel_buckets = 1 + take(&in, 32);
    p.rel_max_distance = 1 + take(&in, 64);
    p.rel_bidirectional = (int)take(&in, 2);
  }
  int64_t docs = B;
  if ((opt & 512) && B == 1) { /* packed: up to 4 documents */
    docs = 1 + take(&in, 4);
    c.cu[0] = 0;
    for (int64_t i = 1; i <= docs; i++)
      c.cu[i] = c.cu[i - 1] + (int32_t)take(&in, S - c.cu[i - 1] + 1);
    if (take(&in, 2))
      c.cu[docs] = (int32_t)S;
    p.cu_seqlens_q = c.cu;
    p.cu_seqlens_k = c.cu;
    p.varlen_batch = docs;
  }
  if (opt & 1024) {
    for (int64_t b = 0; b < docs; b++) {
      const int64_t L = p.cu_seqlens_q ? c.cu[b + 1] - c.cu[b] : S;
      c.kvl[b] = (int32_t)(L - take(&in, L + 1));
    }
    p.kv_lens = c.kvl;
  }

  /* inputs (the whole sequence is this rank's slice) */
  void *q = make(B * S * hq * (d > 2 ? d : 2), c.dt, &c.seed);
  void *k = make(B * S * hkv * d, c.dt, &c.seed);
  void *v = make(B * S * hkv * dv, c.dt, &c.seed);
  void *dout = make(B * S * hq * dv, c.dt, &c.seed);
  p.q = view(q, c.dt, c.bhsd, B, S, hq, d);
  p.k = view(k, c.dt, c.bhsd, B, S, hkv, d);
  p.v = view(v, c.dt, c.bhsd, B, S, hkv, dv);
  char msg[400];
  msg[0] = '\0';
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_ring_opts ro;
  attn_ring_opts_init(&ro);
  ro.layout = c.layout;
  attn_ring_stats stats;
  if (take(&in, 2))
    ro.stats = &stats;

  /* whether the whole call is valid for attn_forward, and for the ring */
  attn_params chk = p;
  obuf o1 = oalloc((size_t)((B + 1) * S * (hq + 1) * (dv + 1)) * 4);
  chk.o = view(o1.p, c.dt, c.bhsd, B, S, hq, dv);
  chk.lse = NULL;
  chk.error_message = NULL;
  int expect_ok = attn_forward_check(&chk) == ATTN_OK;
  if (p.causal == ATTN_CAUSAL_TOP_LEFT && p.kv_lens &&
      (p.alibi_slopes || p.rel_bias))
    for (int64_t b = 0; b < docs; b++)
      if (c.kvl[b] != (p.cu_seqlens_q ? c.cu[b + 1] - c.cu[b] : S))
        expect_ok = 0; /* not expressible over the ring (ring.h) */

  obuf l1 = oalloc((size_t)(B * hq * S) * 4);
  p.o = view(o1.p, c.dt, c.bhsd, B, S, hq, dv);
  p.lse = (float *)l1.p;
  size_t psize = sizeof p;
  MPI_Comm use = comm;
  attn_params *pp = &p;
  const int fwd_bad = c.bad >= K_NULL_OPERAND && c.bad <= K_DTYPE;
  if (fwd_bad) {
    const int64_t w = take(&in, 8);
    switch (c.bad) {
    case K_NULL_OPERAND: {
      attn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.o};
      ts[w % 4]->data = NULL;
      break;
    }
    case K_NULL_PARAMS:
      pp = NULL;
      break;
    case K_LAYOUT:
      ro.layout = (attn_ring_layout)(w % 2 ? -1 - w : 2 + w);
      break;
    case K_COMM_NULL:
      use = MPI_COMM_NULL;
      break;
    case K_ABI:
      psize = w % 2 ? sizeof p + 8 : 17 + (size_t)w;
      break;
    case K_O_SHAPE: /* o's buffer has room for each */
      if (w % 3 == 0)
        p.o = view(o1.p, c.dt, c.bhsd, B, S, hq + 1, dv);
      else if (w % 3 == 1)
        p.o = view(o1.p, c.dt, c.bhsd, B, S, hq, dv + 1);
      else
        p.o = view(o1.p, c.dt, c.bhsd, B + 1, S, hq, dv);
      break;
    case K_O_OVERLAP:
      if (w % 3 == 1 && d == dv)
        p.o.data = q; /* o over q: the same shape and dtype */
      else if (w % 3 == 2)
        p.lse = (float *)q; /* lse over q (q's buffer has room) */
      else
        p.lse = (float *)(void *)o1.p; /* lse over o */
      break;
    case K_SINK_BAD:
      c.sinks[w % hq] = w % 2 ? NAN : INFINITY;
      p.sinks = c.sinks;
      break;
    case K_UNSUPPORTED:
      if (w % 3 == 0)
        p.dropout_p = 0.25f;
      else if (w % 3 == 1)
        p.sparse_kind = ATTN_SPARSE_STRIDED, p.sparse_l = 4;
      else
        p.global_count = 1;
      break;
    case K_KV_LENS:
      for (int64_t b = 0; b < docs; b++)
        c.kvl[b] = (int32_t)(p.cu_seqlens_q ? c.cu[b + 1] - c.cu[b] : S);
      c.kvl[w % docs] = w % 2 ? -1 - (int32_t)w : (int32_t)(S + 1 + w);
      p.kv_lens = c.kvl;
      break;
    case K_CU_SEQLENS: {
      static int32_t other[6];
      if (B != 1) {
        p.cu_seqlens_q = p.cu_seqlens_k = c.cu;
        c.cu[0] = 0, c.cu[1] = (int32_t)S;
        p.varlen_batch = 1; /* batch 2 with cu_seqlens */
        break;
      }
      if (p.cu_seqlens_q == NULL) {
        c.cu[0] = 0, c.cu[1] = (int32_t)S;
        p.cu_seqlens_q = p.cu_seqlens_k = c.cu;
        p.varlen_batch = 1;
        p.kv_lens = NULL;
      }
      const int64_t nb = p.varlen_batch;
      switch (w % 5) {
      case 0:
        memcpy(other, c.cu, sizeof other);
        other[nb] = c.cu[nb] == 0 ? 1 : c.cu[nb] - 1;
        p.cu_seqlens_k = other;
        break;
      case 1:
        c.cu[nb] = (int32_t)(S + 1 + w);
        break;
      case 2:
        c.cu[0] = 1 + (int32_t)w;
        break;
      case 3:
        p.varlen_batch = 0;
        break;
      default:
        p.cu_seqlens_k = NULL;
        break;
      }
      break;
    }
    case K_SHAPE:
      if (w % 4 == 0)
        p.k.shape[1] = S + 1;
      else if (w % 4 == 1)
        p.q.stride[w % 3 + 1] = -1;
      else if (w % 4 == 2)
        p.v.shape[0] = 0;
      else
        p.q.shape[2] = 0;
      break;
    case K_DTYPE:
      if (w % 2)
        p.k.dtype = ATTN_DTYPE_BOOL;
      else
        p.o.dtype = (attn_dtype)(9 + w);
      break;
    default:
      break;
    }
    expect_ok = 0;
  }

  /* ---- forward ---- */
  if (pp)
    pp->num_threads = c.threads_first;
  attn_status st = ring_call(0, use, &ro, pp, psize);
  if (st != ATTN_OK) {
    if (expect_ok)
      die("a valid forward failed", st, msg);
    if (pp && msg[0] == '\0')
      die("a failing forward gave no message", st, "");
    untouched(&o1, "o");
    untouched(&l1, "lse");
    goto done_inputs;
  }
  if (!expect_ok)
    die("an invalid forward returned ATTN_OK", c.bad, "");
  {
    /* the other thread count: the same bits */
    obuf o2 = oalloc(o1.n), l2 = oalloc(l1.n);
    attn_params p2 = p;
    p2.o.data = o2.p;
    p2.lse = (float *)l2.p;
    p2.num_threads = 3 - c.threads_first;
    st = attn_ring_forward(NULL, comm, &ro, &p2);
    if (st != ATTN_OK)
      die("the forward on the other thread count failed", st, msg);
    if (memcmp(o1.p, o2.p, o1.n) || memcmp(l1.p, l2.p, l1.n))
      die("the forward depends on the thread count", c.threads_first, "");
    free(o2.p);
    free(l2.p);
  }
  p.num_threads = 1;
  {
    /* against the oracle */
    oracle_ref ref;
    oracle_naive nv;
    oracle_cmp cmp;
    if (oracle_forward(&p, &ref) != 0 || oracle_naive_f32(&p, &nv) != 0)
      abort();
    oracle_compare(&p, &ref, &nv, &cmp);
    if (!cmp.ok)
      die("the ring forward is outside the oracle's tolerance", c.bad,
          cmp.problem);
    /* against single-process attn_forward, within its oracle budget */
    obuf so = oalloc(o1.n);
    memset(so.p, 0, so.n);
    float *slse = xcalloc(B * hq * S, 4);
    for (int64_t i = 0; i < B * hq * S; i++)
      slse[i] = -INFINITY; /* rows in no document: left unwritten */
    attn_params sp = p;
    sp.o.data = so.p;
    sp.lse = slse;
    st = attn_forward(NULL, &sp);
    if (st != ATTN_OK)
      die("single-process attn_forward failed", st, msg);
    /* the same inputs as the ring's call: the same reference */
    oracle_compare(&sp, &ref, &nv, &cmp);
    oracle_ref_free(&ref);
    oracle_naive_free(&nv);
    if (cmp.ok) { /* (attn_forward's own accuracy is params2_fuzz's) */
      const double tol_o = 2 * (2 * cmp.err_o_naive + cmp.floor_o);
      const double tol_l = 2 * (2 * cmp.err_lse_naive + cmp.floor_lse);
      const double eo = tdiff(&p.o, &sp.o);
      const double el = adiff(p.lse, slse, B * hq * S);
      if (!(eo <= tol_o) || !(el <= tol_l)) {
        char m[160];
        snprintf(m, sizeof m, "o %.3g (bound %.3g), lse %.3g (bound %.3g)", eo,
                 tol_o, el, tol_l);
        die("|ring - attn_forward| beyond the bound", c.bad, m);
      }
    }
    free(so.p);
    free(slse);
  }

  /* ---- backward ---- */
  {
    obuf dq = oalloc((size_t)(B * S * (hq + 1) * d) * 4);
    obuf dk = oalloc((size_t)(B * S * hkv * d) * 4);
    obuf dvb = oalloc((size_t)(B * S * hkv * dv) * 4);
    obuf ds = oalloc(12 * 4);
    obuf dr = oalloc(32 * 12 * 4);
    p.dout = view(dout, c.dt, c.bhsd, B, S, hq, dv);
    p.dq = view(dq.p, ATTN_DTYPE_F32, c.bhsd, B, S, hq, d);
    p.dk = view(dk.p, ATTN_DTYPE_F32, c.bhsd, B, S, hkv, d);
    p.dv = view(dvb.p, ATTN_DTYPE_F32, c.bhsd, B, S, hkv, dv);
    p.dsinks = p.sinks && take(&in, 2) ? (float *)ds.p : NULL;
    p.drel_bias = p.rel_bias && take(&in, 2) ? (float *)dr.p : NULL;
    int bexp = 1;
    if (c.bad >= K_B_NULL) {
      const int64_t w = take(&in, 8);
      bexp = 0;
      switch (c.bad) {
      case K_B_NULL:
        if (w % 3 == 0)
          p.lse = NULL;
        else if (w % 3 == 1)
          p.dout.data = NULL;
        else
          p.dk.data = NULL;
        break;
      case K_B_SHAPE: /* dq one head too many (its buffer has room) */
        if (w % 2 && dv > 1)
          p.dv.shape[3] = dv - 1;
        else
          p.dq = view(dq.p, ATTN_DTYPE_F32, c.bhsd, B, S, hq + 1, d);
        break;
      case K_B_OVERLAP:
        if (w % 3 == 0 && c.dt == ATTN_DTYPE_F32)
          p.dq.data = q; /* dq over q: the same f32 layout */
        else if (w % 3 == 1 && d == dv)
          p.dv.data = dk.p; /* dk and dv the same memory */
        else
          p.dk.data = dq.p; /* dk over dq (dq's buffer is larger) */
        break;
      case K_B_DSINKS:
        p.sinks = NULL;
        p.dsinks = (float *)ds.p;
        break;
      default:
        break;
      }
    }
    p.num_threads = c.threads_first;
    st = attn_ring_backward(NULL, comm, &ro, &p);
    if (st != ATTN_OK) {
      if (bexp)
        die("a valid backward failed", st, msg);
      if (msg[0] == '\0')
        die("a failing backward gave no message", st, "");
      untouched(&dq, "dq");
      untouched(&dk, "dk");
      untouched(&dvb, "dv");
      untouched(&ds, "dsinks");
      untouched(&dr, "drel_bias");
    } else if (!bexp) {
      die("an invalid backward returned ATTN_OK", c.bad, "");
    } else {
      obuf dq2 = oalloc(dq.n), dk2 = oalloc(dk.n), dv2 = oalloc(dvb.n),
           ds2 = oalloc(ds.n), dr2 = oalloc(dr.n);
      attn_params p2 = p;
      p2.dq.data = dq2.p;
      p2.dk.data = dk2.p;
      p2.dv.data = dv2.p;
      p2.dsinks = p.dsinks ? (float *)ds2.p : NULL;
      p2.drel_bias = p.drel_bias ? (float *)dr2.p : NULL;
      p2.num_threads = 3 - c.threads_first;
      st = attn_ring_backward(NULL, comm, &ro, &p2);
      if (st != ATTN_OK)
        die("the backward on the other thread count failed", st, msg);
      if (memcmp(dq.p, dq2.p, dq.n) || memcmp(dk.p, dk2.p, dk.n) ||
          memcmp(dvb.p, dv2.p, dvb.n) || memcmp(ds.p, ds2.p, ds.n) ||
          memcmp(dr.p, dr2.p, dr.n))
        die("the backward depends on the thread count", c.threads_first, "");
      free(dq2.p), free(dk2.p), free(dv2.p), free(ds2.p), free(dr2.p);
      oracle_grads g, gn;
      oracle_grad_cmp gc;
      if (oracle_backward(&p, &g) != 0 || oracle_backward_f32(&p, &gn) != 0)
        abort();
      oracle_grads_compare(&p, &g, &gn, &gc);
      if (!gc.ok)
        die("the ring backward is outside the oracle's tolerance", c.bad,
            gc.problem);
      oracle_grads_free(&g);
      oracle_grads_free(&gn);
      if (p.dsinks)
        for (int64_t h = 0; h < hq; h++)
          if (!isfinite(p.dsinks[h]))
            die("dsinks not finite", h, "");
    }
    free(dq.p), free(dk.p), free(dvb.p), free(ds.p), free(dr.p);
  }

done_inputs:
  free(q);
  free(k);
  free(v);
  free(dout);
  free(o1.p);
  free(l1.p);
  return 0;
}
