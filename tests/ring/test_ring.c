/*
 * test_ring.c - attn_ring_forward / attn_ring_backward (libattn_ring) on
 * 1..R ranks (mpirun -np 2 and -np 4 in ctest), against
 *   - the float64 oracle (tests/oracle*.h), with the rule every kernel is
 *     held to (oracle_compare, oracle_grads_compare): the ring's O and LSE
 *     and its dQ, dK, dV, gathered on rank 0 into the whole sequence;
 *   - single-process attn_forward / attn_backward on the whole sequence,
 *     held to the same rule (so both are within the oracle tolerance) and
 *     their difference printed.
 * Cases: causal (both alignments) and not, contiguous (uneven lengths, an
 * empty rank) and zig-zag layouts, lengths not divisible by the rank
 * count, GQA, head_dim_v != head_dim, softcap, ALiBi, windows, kv_lens,
 * prefix-LM, position offsets, T5, sinks, packed sequences, bf16, strided
 * (bhsd) slices. Then bad input: every rank must return the same status
 * (and none may hang: ctest's TIMEOUT guards that).
 */
#include "attn/ring.h"
#include "oracle.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;
static int g_rank, g_size;

typedef struct ring_case {
  const char *name;
  int64_t B, S, hq, hkv, d, dv;
  attn_causal causal;
  attn_ring_layout layout;
  int uneven;     /* contiguous: uneven lengths (rank 1 empty on 4+) */
  int64_t wl, wr; /* window */
  float softcap;
  int alibi;
  int kvlens;     /* kv_lens below S on batch 0 */
  int64_t prefix; /* -1 off */
  int64_t qoff, koff;
  int t5;
  int sinks;
  int varlen;       /* packed: 4 documents */
  attn_dtype dtype; /* of q, k, v, o */
  int bhsd;         /* local slices in bhsd memory order */
  int max_recv;     /* > 0: K/V slices a rank may receive (window) */
} ring_case;

static ring_case base_case(const char *name, int64_t S) {
  ring_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  c.B = 1;
  c.S = S;
  c.hq = 2;
  c.hkv = 1;
  c.d = 16;
  c.dv = 16;
  c.wl = c.wr = -1;
  c.prefix = -1;
  c.dtype = ATTN_DTYPE_F32;
  return c;
}

/* The global token ranges of rank r. */
static int segs_of(const ring_case *c, int r, int64_t st[2], int64_t ln[2]) {
  int n = 0;
  if (c->layout == ATTN_RING_ZIGZAG || !c->uneven) {
    attn_ring_partition(c->layout, c->S, g_size, r, st, ln, &n);
    return n;
  }
  /* uneven contiguous: rank 0 short, rank 1 empty when R >= 3, the last
   * takes the rest */
  int64_t lens[64], pos = 0;
  for (int i = 0; i < g_size; i++)
    lens[i] = i == 0 ? c->S / (2 * g_size) + 1
                     : (i == 1 && g_size >= 3 ? 0 : c->S / g_size);
  int64_t sum = 0;
  for (int i = 0; i < g_size - 1; i++)
    sum += lens[i];
  lens[g_size - 1] = c->S - sum;
  for (int i = 0; i < r; i++)
    pos += lens[i];
  st[0] = pos;
  ln[0] = lens[r];
  st[1] = pos + lens[r];
  ln[1] = 0;
  return 1;
}

static int64_t local_n(const ring_case *c, int r) {
  int64_t st[2], ln[2];
  const int n = segs_of(c, r, st, ln);
  return ln[0] + (n > 1 ? ln[1] : 0);
}

/* Copies the rows of rank r out of (into, back) a global [B, S, h, w]
 * contiguous array of element size es. */
static void rows_move(const ring_case *c, int r, int to_global, char *global,
                      char *local, int64_t B, int64_t S, int64_t hw,
                      size_t es) {
  int64_t st[2], ln[2];
  const int ns = segs_of(c, r, st, ln);
  const int64_t n = local_n(c, r);
  int64_t off = 0;
  for (int s = 0; s < ns; s++) {
    for (int64_t b = 0; b < B; b++) {
      char *g = global + (size_t)((b * S + st[s]) * hw) * es;
      char *l = local + (size_t)((b * n + off) * hw) * es;
      if (to_global)
        memcpy(g, l, (size_t)(ln[s] * hw) * es);
      else
        memcpy(l, g, (size_t)(ln[s] * hw) * es);
    }
    off += ln[s];
  }
}

static void *xcalloc(size_t n, size_t s) {
  void *p = calloc(n ? n : 1, s);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return p;
}

/* Fills n values of dtype at dst (seeded, N(0, scale)). */
static void fill(tc_rng *r, void *dst, attn_dtype t, int64_t n, double scale) {
  for (int64_t i = 0; i < n; i++) {
    const float x = (float)(tc_normal(r) * scale);
    if (t == ATTN_DTYPE_BF16)
      ((uint16_t *)dst)[i] = tc_f32_to_bf16(x);
    else
      ((float *)dst)[i] = x;
  }
}

/* dst[i] = element i of src as f32. */
static void to_f32(const void *src, attn_dtype t, int64_t n, float *dst) {
  for (int64_t i = 0; i < n; i++)
    dst[i] = t == ATTN_DTYPE_BF16 ? tc_bf16_to_f32(((const uint16_t *)src)[i])
                                  : ((const float *)src)[i];
}

/* A local [B, n, h, w] view of data (contiguous), bshd or bhsd memory. */
static attn_tensor view(void *data, attn_dtype t, int64_t B, int64_t n,
                        int64_t h, int64_t w, int bhsd) {
  return bhsd ? attn_tensor_bhsd(data, t, B, n, h, w)
              : attn_tensor_bshd(data, t, B, n, h, w);
}

/* bshd contiguous src -> bhsd memory dst (or back) */
static void reorder(const char *src, char *dst, int64_t B, int64_t n, int64_t h,
                    int64_t w, size_t es, int to_bhsd) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t k = 0; k < h; k++) {
        const size_t a = (size_t)(((b * n + i) * h + k) * w) * es;
        const size_t z = (size_t)(((b * h + k) * n + i) * w) * es;
        if (to_bhsd)
          memcpy(dst + z, src + a, (size_t)w * es);
        else
          memcpy(dst + a, src + z, (size_t)w * es);
      }
}

/* Sends local f32 [B, n, hw] of every rank to rank 0, which writes it
 * into global [B, S, hw]. */
static void gather(const ring_case *c, float *local, float *global, int64_t B,
                   int64_t S, int64_t hw) {
  if (g_rank != 0) {
    const int64_t n = local_n(c, g_rank);
    MPI_Send(local, (int)(B * n * hw), MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
    return;
  }
  for (int r = 0; r < g_size; r++) {
    const int64_t n = local_n(c, r);
    float *buf = r == 0 ? local : xcalloc((size_t)(B * n * hw), 4);
    if (r != 0)
      MPI_Recv(buf, (int)(B * n * hw), MPI_FLOAT, r, 7, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
    rows_move(c, r, 1, (char *)global, (char *)buf, B, S, hw, 4);
    if (r != 0)
      free(buf);
  }
}

static double max_diff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isinf(a[i]) && a[i] == b[i])
      continue;
    const double d = fabs((double)a[i] - b[i]);
    if (!(d <= m))
      m = d;
  }
  return m;
}

static void run_case(const ring_case *c, uint64_t seed) {
  tc_rng rng = {seed};
  const int64_t B = c->B, S = c->S, hq = c->hq, hkv = c->hkv, d = c->d,
                dv = c->dv;
  const size_t es = attn_dtype_size(c->dtype);
  /* global problem (identical on every rank) */
  char *gq = xcalloc((size_t)(B * S * hq * d), es);
  char *gk = xcalloc((size_t)(B * S * hkv * d), es);
  char *gv = xcalloc((size_t)(B * S * hkv * dv), es);
  char *gdo = xcalloc((size_t)(B * S * hq * dv), es);
  fill(&rng, gq, c->dtype, B * S * hq * d, 1.0);
  fill(&rng, gk, c->dtype, B * S * hkv * d, 1.0);
  fill(&rng, gv, c->dtype, B * S * hkv * dv, 1.0);
  fill(&rng, gdo, c->dtype, B * S * hq * dv, 1.0);
  float slopes[16], sinks[16], rel[32 * 16];
  int32_t kvl[4], cu[6] = {0};
  attn_alibi_slopes(hq, slopes);
  for (int64_t h = 0; h < hq; h++)
    sinks[h] = h == 0 ? -INFINITY : (float)tc_normal(&rng);
  for (int i = 0; i < 32 * 16; i++)
    rel[i] = (float)tc_normal(&rng) * 0.5f;

  attn_params gp; /* the whole sequence */
  attn_params_init(&gp);
  gp.q = attn_tensor_bshd(gq, c->dtype, B, S, hq, d);
  gp.k = attn_tensor_bshd(gk, c->dtype, B, S, hkv, d);
  gp.v = attn_tensor_bshd(gv, c->dtype, B, S, hkv, dv);
  gp.causal = c->causal;
  gp.window_left = c->wl;
  gp.window_right = c->wr;
  gp.softcap = c->softcap;
  gp.prefix_len = c->prefix;
  gp.q_pos_offset = c->qoff;
  gp.k_pos_offset = c->koff;
  gp.num_threads = 1;
  if (c->alibi)
    gp.alibi_slopes = slopes;
  if (c->sinks)
    gp.sinks = sinks;
  if (c->t5) {
    gp.rel_bias = rel;
    gp.rel_buckets = 32;
    gp.rel_max_distance = 40;
    gp.rel_bidirectional = 1;
  }
  int64_t docs = B;
  if (c->varlen) {
    /* 4 documents of lengths not tied to the ranks, the last shorter
     * than the rest of the sequence (trailing rows belong to none) */
    const int64_t cuts[5] = {0, S / 5, S / 5, S / 2 + 3, S - 2};
    for (int i = 0; i < 5; i++)
      cu[i] = (int32_t)cuts[i];
    docs = 4;
    gp.cu_seqlens_q = cu;
    gp.cu_seqlens_k = cu;
    gp.varlen_batch = 4;
  }
  if (c->kvlens) {
    for (int64_t b = 0; b < docs; b++) {
      const int64_t L = c->varlen ? cu[b + 1] - cu[b] : S;
      kvl[b] = (int32_t)(b % 2 == 0 ? L - L / 3 : L);
    }
    gp.kv_lens = kvl;
  }

  /* local slice */
  const int64_t n = local_n(c, g_rank);
  char *lq = xcalloc((size_t)(B * n * hq * d), es);
  char *lk = xcalloc((size_t)(B * n * hkv * d), es);
  char *lv = xcalloc((size_t)(B * n * hkv * dv), es);
  char *ldo = xcalloc((size_t)(B * n * hq * dv), es);
  rows_move(c, g_rank, 0, gq, lq, B, S, hq * d, es);
  rows_move(c, g_rank, 0, gk, lk, B, S, hkv * d, es);
  rows_move(c, g_rank, 0, gv, lv, B, S, hkv * dv, es);
  rows_move(c, g_rank, 0, gdo, ldo, B, S, hq * dv, es);
  if (c->bhsd) { /* the same slices in [B, h, n, w] memory */
    char *t;
    const struct {
      char **p;
      int64_t h, w;
    } ops[4] = {{&lq, hq, d}, {&lk, hkv, d}, {&lv, hkv, dv}, {&ldo, hq, dv}};
    for (int i = 0; i < 4; i++) {
      t = xcalloc((size_t)(B * n * ops[i].h * ops[i].w), es);
      reorder(*ops[i].p, t, B, n, ops[i].h, ops[i].w, es, 1);
      free(*ops[i].p);
      *ops[i].p = t;
    }
  }
  char *lo = xcalloc((size_t)(B * n * hq * dv), es);
  float *llse = xcalloc((size_t)(B * hq * n), 4);
  char *ldq = xcalloc((size_t)(B * n * hq * d), 4);
  char *ldk = xcalloc((size_t)(B * n * hkv * d), 4);
  char *ldv = xcalloc((size_t)(B * n * hkv * dv), 4);
  float dsinks[16] = {0}, *drel = xcalloc(32 * 16, 4);

  attn_params lp = gp;
  lp.q = view(lq, c->dtype, B, n, hq, d, c->bhsd);
  lp.k = view(lk, c->dtype, B, n, hkv, d, c->bhsd);
  lp.v = view(lv, c->dtype, B, n, hkv, dv, c->bhsd);
  lp.o = view(lo, c->dtype, B, n, hq, dv, c->bhsd);
  lp.lse = llse;
  char msg[300] = {0};
  lp.error_message = msg;
  lp.error_message_size = sizeof msg;
  attn_ring_opts ro;
  attn_ring_opts_init(&ro);
  ro.layout = c->layout;
  attn_ring_stats stats;
  ro.stats = &stats;
  attn_status st = attn_ring_forward(NULL, MPI_COMM_WORLD, &ro, &lp);
  CHECK(st == ATTN_OK, "%s: forward status %d (%s)", c->name, (int)st, msg);
  if (c->max_recv > 0) /* slices no pair needs are not received */
    CHECK(stats.slices_received <= c->max_recv && stats.pairs_computed <= 2,
          "%s: rank %d received %lld slices, computed %lld pairs", c->name,
          g_rank, (long long)stats.slices_received,
          (long long)stats.pairs_computed);
  lp.dout = view(ldo, c->dtype, B, n, hq, dv, c->bhsd);
  lp.dq = view(ldq, ATTN_DTYPE_F32, B, n, hq, d, c->bhsd);
  lp.dk = view(ldk, ATTN_DTYPE_F32, B, n, hkv, d, c->bhsd);
  lp.dv = view(ldv, ATTN_DTYPE_F32, B, n, hkv, dv, c->bhsd);
  if (c->sinks)
    lp.dsinks = dsinks;
  if (c->t5)
    lp.drel_bias = drel;
  if (st == ATTN_OK) {
    st = attn_ring_backward(NULL, MPI_COMM_WORLD, &ro, &lp);
    CHECK(st == ATTN_OK, "%s: backward status %d (%s)", c->name, (int)st, msg);
  }

  /* results to f32, bshd, and to rank 0 */
  const int64_t no = B * n * hq * dv;
  float *lo32 = xcalloc((size_t)no, 4), *t32 = xcalloc((size_t)no, 4);
  to_f32(lo, c->dtype, no, t32);
  if (c->bhsd) {
    reorder((char *)t32, (char *)lo32, B, n, hq, dv, 4, 0);
    char *t = xcalloc((size_t)(B * n * hq * d), 4);
    reorder(ldq, t, B, n, hq, d, 4, 0);
    memcpy(ldq, t, (size_t)(B * n * hq * d) * 4);
    free(t);
    t = xcalloc((size_t)(B * n * hkv * d), 4);
    reorder(ldk, t, B, n, hkv, d, 4, 0);
    memcpy(ldk, t, (size_t)(B * n * hkv * d) * 4);
    free(t);
    t = xcalloc((size_t)(B * n * hkv * dv), 4);
    reorder(ldv, t, B, n, hkv, dv, 4, 0);
    memcpy(ldv, t, (size_t)(B * n * hkv * dv) * 4);
    free(t);
  } else {
    memcpy(lo32, t32, (size_t)no * 4);
  }
  float *go = xcalloc((size_t)(B * S * hq * dv), 4);
  float *glse = xcalloc((size_t)(B * hq * S), 4);
  float *gdq = xcalloc((size_t)(B * S * hq * d), 4);
  float *gdk = xcalloc((size_t)(B * S * hkv * d), 4);
  float *gdv = xcalloc((size_t)(B * S * hkv * dv), 4);
  gather(c, lo32, go, B, S, hq * dv);
  gather(c, llse, glse, B * hq, S, 1);
  gather(c, (float *)ldq, gdq, B, S, hq * d);
  gather(c, (float *)ldk, gdk, B, S, hkv * d);
  gather(c, (float *)ldv, gdv, B, S, hkv * dv);

  if (g_rank == 0 && st == ATTN_OK) {
    /* the ring's result, in f32, as one call's output */
    attn_params rp = gp;
    rp.o = attn_tensor_bshd(go, ATTN_DTYPE_F32, B, S, hq, dv);
    rp.lse = glse;
    /* rounded to the dtype the ring wrote, for the oracle's floor */
    oracle_ref ref;
    oracle_naive nv;
    oracle_cmp cmp;
    attn_params op = rp;
    op.o.dtype = c->dtype; /* floor of bf16 outputs (o values from f32) */
    char *ob = NULL;
    if (c->dtype != ATTN_DTYPE_F32) {
      ob = xcalloc((size_t)(B * S * hq * dv), es);
      for (int64_t i = 0; i < B * S * hq * dv; i++)
        ((uint16_t *)ob)[i] = tc_f32_to_bf16(go[i]);
      op.o = attn_tensor_bshd(ob, c->dtype, B, S, hq, dv);
    }
    if (oracle_forward(&op, &ref) == 0 && oracle_naive_f32(&op, &nv) == 0) {
      oracle_compare(&op, &ref, &nv, &cmp);
      CHECK(cmp.ok, "%s: ring forward vs oracle: %s (err o %.3g, naive %.3g)",
            c->name, cmp.problem, cmp.err_o, cmp.err_o_naive);
      oracle_ref_free(&ref);
      oracle_naive_free(&nv);
    }
    /* single-process forward on the whole sequence */
    char *so = xcalloc((size_t)(B * S * hq * dv), es);
    float *slse = xcalloc((size_t)(B * hq * S), 4);
    attn_params sp = gp;
    sp.o = attn_tensor_bshd(so, c->dtype, B, S, hq, dv);
    sp.lse = slse;
    /* rows past the last packed sequence: attn_forward leaves them
     * unwritten; the ring (and the oracle) give o = 0, lse = -inf */
    for (int64_t i = 0; i < B * hq * S; i++)
      slse[i] = -INFINITY;
    CHECK(attn_forward(NULL, &sp) == ATTN_OK, "%s: single forward", c->name);
    float *so32 = xcalloc((size_t)(B * S * hq * dv), 4);
    to_f32(so, c->dtype, B * S * hq * dv, so32);
    const double dO = max_diff(go, so32, B * S * hq * dv);
    const double dL = max_diff(glse, slse, B * hq * S);
    if (oracle_forward(&sp, &ref) == 0 && oracle_naive_f32(&sp, &nv) == 0) {
      oracle_compare(&sp, &ref, &nv, &cmp);
      CHECK(cmp.ok, "%s: single forward vs oracle: %s", c->name, cmp.problem);
      /* the ring within the single call's own oracle budget of it */
      const double tol = 2 * (2 * cmp.err_o_naive + cmp.floor_o);
      CHECK(dO <= tol, "%s: |ring - single| o %.3g > %.3g", c->name, dO, tol);
      oracle_ref_free(&ref);
      oracle_naive_free(&nv);
    }
    /* backward: gradients of the ring against the oracle, from the ring's
     * O and LSE (oracle_backward computes its own in double) */
    attn_params bp = op;
    bp.dout = attn_tensor_bshd(gdo, c->dtype, B, S, hq, dv);
    bp.dq = attn_tensor_bshd(gdq, ATTN_DTYPE_F32, B, S, hq, d);
    bp.dk = attn_tensor_bshd(gdk, ATTN_DTYPE_F32, B, S, hkv, d);
    bp.dv = attn_tensor_bshd(gdv, ATTN_DTYPE_F32, B, S, hkv, dv);
    if (c->sinks)
      bp.dsinks = dsinks;
    if (c->t5)
      bp.drel_bias = drel;
    oracle_grads gref, gnv;
    oracle_grad_cmp gc;
    if (oracle_backward(&bp, &gref) == 0 &&
        oracle_backward_f32(&bp, &gnv) == 0) {
      oracle_grads_compare(&bp, &gref, &gnv, &gc);
      CHECK(gc.ok, "%s: ring backward vs oracle: %s", c->name, gc.problem);
      oracle_grads_free(&gref);
      oracle_grads_free(&gnv);
    }
    /* single backward */
    float *sdq = xcalloc((size_t)(B * S * hq * d), 4);
    float *sdk = xcalloc((size_t)(B * S * hkv * d), 4);
    float *sdv = xcalloc((size_t)(B * S * hkv * dv), 4);
    float sds[16], *sdr = xcalloc(32 * 16, 4);
    attn_params sb = sp;
    sb.dout = bp.dout;
    sb.dq = attn_tensor_bshd(sdq, ATTN_DTYPE_F32, B, S, hq, d);
    sb.dk = attn_tensor_bshd(sdk, ATTN_DTYPE_F32, B, S, hkv, d);
    sb.dv = attn_tensor_bshd(sdv, ATTN_DTYPE_F32, B, S, hkv, dv);
    sb.dsinks = c->sinks ? sds : NULL;
    sb.drel_bias = c->t5 ? sdr : NULL;
    CHECK(attn_backward(NULL, &sb) == ATTN_OK, "%s: single backward", c->name);
    const double ddq = max_diff(gdq, sdq, B * S * hq * d);
    const double ddk = max_diff(gdk, sdk, B * S * hkv * d);
    const double ddv = max_diff(gdv, sdv, B * S * hkv * dv);
    printf("  %-28s R=%d  |ring-single| o %.2e lse %.2e dq %.2e dk %.2e dv "
           "%.2e\n",
           c->name, g_size, dO, dL, ddq, ddk, ddv);
    free(sdq);
    free(sdk);
    free(sdv);
    free(sdr);
    free(so);
    free(slse);
    free(so32);
    free(ob);
  }
  /* every rank agrees on the tally of rank 0 at the end (main) */
  free(gq);
  free(gk);
  free(gv);
  free(gdo);
  free(lq);
  free(lk);
  free(lv);
  free(ldo);
  free(lo);
  free(llse);
  free(ldq);
  free(ldk);
  free(ldv);
  free(drel);
  free(lo32);
  free(t32);
  free(go);
  free(glse);
  free(gdq);
  free(gdk);
  free(gdv);
}

/* Bad input on some ranks: every rank must return expect. */
static void same_error(const char *name, int bad_rank, int what,
                       attn_status expect) {
  const int64_t n = 8, hq = 2, d = 8;
  float *q = xcalloc((size_t)(n * hq * d), 4),
        *o = xcalloc((size_t)(n * hq * d), 4);
  float lse[16];
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, n, hq, d);
  p.k = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, n, hq, d);
  p.v = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, n, hq, d);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, n, hq, d);
  p.lse = lse;
  char msg[300] = {0};
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_ring_opts ro;
  attn_ring_opts_init(&ro);
  const int me_bad = g_rank == bad_rank;
  switch (what) {
  case 0: /* heads differ on one rank */
    if (me_bad) {
      p.q.shape[2] = 1;
      p.o.shape[2] = 1;
      p.k.shape[2] = 1;
      p.v.shape[2] = 1;
    }
    break;
  case 1: /* a NULL operand */
    if (me_bad)
      p.k.data = NULL;
    break;
  case 2: /* zig-zag with the wrong lengths everywhere (equal slices of
             8 tokens are right only if 2R divides...: take 7 on one) */
    ro.layout = ATTN_RING_ZIGZAG;
    if (me_bad) {
      p.q.shape[1] = p.k.shape[1] = p.v.shape[1] = p.o.shape[1] = 5;
    }
    break;
  case 3: /* a causal mask on one rank only */
    if (me_bad)
      p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    break;
  case 4: /* unsupported option everywhere */
    p.dropout_p = 0.5f;
    break;
  case 7: /* a 0.5 sparse pattern everywhere (refused, never ignored) */
    p.sparse_kind = ATTN_SPARSE_STRIDED;
    p.sparse_l = 4;
    break;
  case 5: /* kv_lens beyond the whole sequence */
  {
    static const int32_t big[1] = {100000};
    p.kv_lens = big;
    break;
  }
  }
  const MPI_Comm comm = what == 6 ? MPI_COMM_NULL : MPI_COMM_WORLD;
  attn_status st = attn_ring_forward(NULL, comm, &ro, &p);
  int mine = (int)st, lo = 0, hi = 0;
  MPI_Allreduce(&mine, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&mine, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  CHECK(lo == hi, "%s: ranks disagree (%d .. %d)", name, lo, hi);
  CHECK(st == expect, "%s: status %d, expected %d (%s)", name, (int)st,
        (int)expect, msg);
  CHECK(msg[0] != '\0', "%s: no message", name);
  if (g_rank == 0)
    printf("  %-28s -> %d \"%s\"\n", name, (int)st, msg);
  free(q);
  free(o);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  if (g_rank == 0)
    printf("test_ring on %d ranks\n", g_size);

  ring_case cs[32];
  int nc = 0;
  ring_case c;
  c = base_case("plain contiguous", 37);
  c.B = 2;
  c.hq = 4;
  c.hkv = 2;
  cs[nc++] = c;
  c = base_case("causal zigzag", 101);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.layout = ATTN_RING_ZIGZAG;
  c.d = 32;
  c.dv = 32;
  cs[nc++] = c;
  c = base_case("causal contiguous uneven", 70);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.uneven = 1;
  cs[nc++] = c;
  c = base_case("causal top-left alibi", 50);
  c.causal = ATTN_CAUSAL_TOP_LEFT;
  c.alibi = 1;
  c.hq = 4;
  cs[nc++] = c;
  c = base_case("causal window zigzag", 130);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.layout = ATTN_RING_ZIGZAG;
  c.wl = 16;
  cs[nc++] = c;
  c = base_case("causal window contiguous", 100);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.wl = 10; /* below every slice: only the previous rank's slice */
  c.max_recv = 1;
  cs[nc++] = c;
  c = base_case("window 8,8 contiguous", 97);
  c.wl = 8;
  c.wr = 8;
  cs[nc++] = c;
  c = base_case("softcap alibi zigzag", 61);
  c.layout = ATTN_RING_ZIGZAG;
  c.softcap = 5.0f;
  c.alibi = 1;
  cs[nc++] = c;
  c = base_case("kv_lens causal", 53);
  c.B = 2;
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.kvlens = 1;
  cs[nc++] = c;
  c = base_case("kv_lens top-left zigzag", 45);
  c.B = 2;
  c.causal = ATTN_CAUSAL_TOP_LEFT;
  c.kvlens = 1;
  c.layout = ATTN_RING_ZIGZAG;
  cs[nc++] = c;
  c = base_case("bf16 causal zigzag gqa", 89);
  c.dtype = ATTN_DTYPE_BF16;
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.layout = ATTN_RING_ZIGZAG;
  c.hq = 4;
  c.hkv = 2;
  cs[nc++] = c;
  c = base_case("packed causal contiguous", 90);
  c.varlen = 1;
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  cs[nc++] = c;
  c = base_case("packed window kv_lens zz", 83);
  c.varlen = 1;
  c.kvlens = 1;
  c.wl = 10;
  c.wr = 3;
  c.layout = ATTN_RING_ZIGZAG;
  cs[nc++] = c;
  c = base_case("sinks causal", 41);
  c.sinks = 1;
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.hq = 3;
  cs[nc++] = c;
  c = base_case("prefix-lm", 47);
  c.prefix = 13;
  cs[nc++] = c;
  c = base_case("offsets causal window", 66);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.qoff = 5;
  c.koff = 3;
  c.wl = 20;
  c.alibi = 1;
  cs[nc++] = c;
  c = base_case("t5 bidirectional", 58);
  c.t5 = 1;
  c.layout = ATTN_RING_ZIGZAG;
  cs[nc++] = c;
  c = base_case("dv != d, bhsd slices", 44);
  c.dv = 8;
  c.bhsd = 1;
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  c.layout = ATTN_RING_ZIGZAG;
  cs[nc++] = c;
  c = base_case("one token per rank or less", 3);
  c.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  cs[nc++] = c;

  for (int i = 0; i < nc; i++)
    run_case(&cs[i], tc_case_seed(0x52494e47, (uint64_t)i));

  const int last = g_size - 1;
  same_error("heads differ on last rank", last, 0, ATTN_ERR_INVALID_SHAPE);
  same_error("NULL k on rank 0", 0, 1, ATTN_ERR_NULL_POINTER);
  same_error("zigzag lengths wrong", last, 2, ATTN_ERR_INVALID_SHAPE);
  same_error("causal on one rank", last, 3, ATTN_ERR_INVALID_ARGUMENT);
  same_error("dropout everywhere", 0, 4, ATTN_ERR_INVALID_ARGUMENT);
  same_error("kv_lens beyond sequence", 0, 5, ATTN_ERR_INVALID_SEQLENS);
  same_error("MPI_COMM_NULL", -1, 6, ATTN_ERR_INVALID_ARGUMENT);
  same_error("sparse pattern everywhere", 0, 7, ATTN_ERR_INVALID_ARGUMENT);

  long tot[2] = {n_pass, n_fail}, all[2] = {0, 0};
  MPI_Reduce(tot, all, 2, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (g_rank == 0)
    printf("%ld passed, %ld failed\n", all[0], all[1]);
  int bad = n_fail > 0, any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any ? 1 : 0;
}
