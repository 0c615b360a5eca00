/*
 * Hammer cases of attn_merge and attn_merge_backward: 1..4 random partial
 * results (O in f32/bf16/f16, some LSE rows -inf), merged into an f32 or
 * bf16 O and an LSE, sinks sometimes; then the backward (dlse given or
 * not) into every partial's dO and dLSE.
 *
 * Reference: num_threads 1. Shared runs read the case's partials (every
 * worker at once); private runs copy them first. Outputs are fresh
 * buffers of 0xFF bytes, compared whole.
 */
#include "hammer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 4

typedef struct mcase {
  int64_t n, b, s, h, dv;
  attn_dtype pdt[MAXP], odt;
  int sinks, dlse;
  /* inputs */
  void *op[MAXP];   /* [b, s, h, dv] each, contiguous */
  float *lp[MAXP];  /* [b, h, s] */
  float *sink;      /* [h] */
  float *dout, *dl; /* [b, s, h, dv] f32, [b, h, s] */
  /* reference outputs */
  void *o; /* merged o (odt) */
  float *lse;
  void *dop[MAXP]; /* f32 [b, s, h, dv] each */
  float *dlp[MAXP];
  float *dsinks;
  attn_status st_fwd, st_bwd;
} mcase;

static void put(attn_dtype dt, void *buf, size_t i, float x) {
  if (dt == ATTN_DTYPE_F32)
    ((float *)buf)[i] = x;
  else if (dt == ATTN_DTYPE_BF16)
    ((uint16_t *)buf)[i] = tc_f32_to_bf16(x);
  else
    ((uint16_t *)buf)[i] = tc_f32_to_f16(x);
}

static size_t n_o(const mcase *c) {
  return (size_t)(c->b * c->s * c->h * c->dv);
}
static size_t n_l(const mcase *c) { return (size_t)(c->b * c->h * c->s); }

static void *fill_ff(size_t bytes) {
  void *x = tc_alloc(bytes ? bytes : 1);
  memset(x, 0xFF, bytes);
  return x;
}

/* Outputs of one run (fresh, 0xFF) and the params pointing at them. */
typedef struct mouts {
  void *o;
  float *lse;
  void *dop[MAXP];
  float *dlp[MAXP];
  float *dsinks;
  attn_tensor otp[MAXP], dtp[MAXP];
  const float *lpp[MAXP];
  float *dlpp[MAXP];
} mouts;

static void params_set(const mcase *c, void *const *op, float *const *lp,
                       const float *sink, const float *dout, const float *dl,
                       mouts *m, attn_merge_params *mp) {
  const size_t no = n_o(c), nl = n_l(c);
  m->o = fill_ff(no * attn_dtype_size(c->odt));
  m->lse = fill_ff(nl * sizeof(float));
  m->dsinks = fill_ff((size_t)c->h * sizeof(float));
  for (int64_t k = 0; k < c->n; k++) {
    m->otp[k] = attn_tensor_bshd(op[k], c->pdt[k], c->b, c->s, c->h, c->dv);
    m->lpp[k] = lp[k];
    m->dop[k] = fill_ff(no * sizeof(float));
    m->dlp[k] = fill_ff(nl * sizeof(float));
    m->dtp[k] =
        attn_tensor_bshd(m->dop[k], ATTN_DTYPE_F32, c->b, c->s, c->h, c->dv);
    m->dlpp[k] = m->dlp[k];
  }
  attn_merge_params_init(mp);
  mp->n_parts = c->n;
  mp->o_parts = m->otp;
  mp->lse_parts = m->lpp;
  mp->o = attn_tensor_bshd(m->o, c->odt, c->b, c->s, c->h, c->dv);
  mp->lse = m->lse;
  mp->sinks = c->sinks ? sink : NULL;
  mp->dout =
      attn_tensor_bshd((void *)dout, ATTN_DTYPE_F32, c->b, c->s, c->h, c->dv);
  mp->dlse = c->dlse ? dl : NULL;
  mp->do_parts = m->dtp;
  mp->dlse_parts = m->dlpp;
  mp->dsinks = c->sinks ? m->dsinks : NULL;
}

static void mouts_free(const mcase *c, mouts *m) {
  free(m->o), free(m->lse), free(m->dsinks);
  for (int64_t k = 0; k < c->n; k++)
    free(m->dop[k]), free(m->dlp[k]);
}

static void *merge_make(uint64_t seed, int index, attn_context *ctx) {
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  static const int64_t dvs[] = {1, 7, 64, 80, 257};
  mcase *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  tc_rng r = {tc_case_seed(seed ^ 0x3E26Eull, (uint64_t)index)};
  c->n = tc_range(&r, 1, MAXP);
  c->b = tc_range(&r, 1, 2);
  c->s = tc_chance(&r, 0.3) ? tc_range(&r, 1, 4) : tc_range(&r, 1, 150);
  c->h = tc_range(&r, 1, 4);
  c->dv = dvs[tc_below(&r, 5)];
  c->odt = tc_chance(&r, 0.7) ? ATTN_DTYPE_F32 : ATTN_DTYPE_BF16;
  c->sinks = tc_chance(&r, 0.3);
  c->dlse = tc_chance(&r, 0.5);
  const size_t no = n_o(c), nl = n_l(c);
  for (int64_t k = 0; k < c->n; k++) {
    c->pdt[k] = dts[tc_below(&r, 3)];
    c->op[k] = tc_alloc(no * attn_dtype_size(c->pdt[k]));
    for (size_t i = 0; i < no; i++)
      put(c->pdt[k], c->op[k], i, (float)tc_normal(&r));
    c->lp[k] = tc_alloc(nl * sizeof(float));
    for (size_t i = 0; i < nl; i++)
      c->lp[k][i] =
          tc_chance(&r, 0.1) ? -INFINITY : (float)(3.0 * tc_normal(&r));
  }
  c->sink = tc_alloc((size_t)c->h * sizeof(float));
  for (int64_t h = 0; h < c->h; h++)
    c->sink[h] = tc_chance(&r, 0.2) ? -INFINITY : (float)tc_normal(&r);
  c->dout = tc_alloc(no * sizeof(float));
  for (size_t i = 0; i < no; i++)
    c->dout[i] = (float)tc_normal(&r);
  c->dl = tc_alloc(nl * sizeof(float));
  for (size_t i = 0; i < nl; i++)
    c->dl[i] = (float)tc_normal(&r);
  mouts m;
  attn_merge_params mp;
  params_set(c, c->op, c->lp, c->sink, c->dout, c->dl, &m, &mp);
  mp.num_threads = 1;
  c->st_fwd = attn_merge(ctx, &mp);
  c->st_bwd = attn_merge_backward(ctx, &mp);
  c->o = m.o, c->lse = m.lse, c->dsinks = m.dsinks;
  for (int64_t k = 0; k < c->n; k++)
    c->dop[k] = m.dop[k], c->dlp[k] = m.dlp[k];
  if (c->st_fwd != ATTN_OK || c->st_bwd != ATTN_OK)
    fprintf(stderr, "hammer: merge case %d: reference failed (%s, %s)\n", index,
            attn_strerror(c->st_fwd), attn_strerror(c->st_bwd));
  return c;
}

static void merge_free(void *cv) {
  mcase *c = cv;
  for (int64_t k = 0; k < c->n; k++)
    free(c->op[k]), free(c->lp[k]), free(c->dop[k]), free(c->dlp[k]);
  free(c->sink), free(c->dout), free(c->dl);
  free(c->o), free(c->lse), free(c->dsinks);
  free(c);
}

static void merge_describe(const void *cv, FILE *f) {
  const mcase *c = cv;
  fprintf(f,
          "  merge: %lld parts, batch %lld, seq %lld, heads %lld, dim_v %lld, "
          "o %s, sinks %d, dlse %d\n",
          (long long)c->n, (long long)c->b, (long long)c->s, (long long)c->h,
          (long long)c->dv, tp_dtype_name(c->odt), c->sinks, c->dlse);
}

static int merge_run(void *cv, void **privp, hm_worker *w, const hm_run *r) {
  (void)privp;
  const mcase *c = cv;
  if (c->st_fwd != ATTN_OK || c->st_bwd != ATTN_OK)
    return 0;
  const size_t no = n_o(c), nl = n_l(c);
  void *op[MAXP];
  float *lp[MAXP];
  const float *sink = c->sink, *dout = c->dout, *dl = c->dl;
  for (int64_t k = 0; k < c->n; k++) {
    op[k] = c->op[k];
    lp[k] = c->lp[k];
    if (r->private_data) {
      op[k] = hm_dup(c->op[k], no * attn_dtype_size(c->pdt[k]));
      lp[k] = hm_dup(c->lp[k], nl * sizeof(float));
    }
  }
  if (r->private_data) {
    sink = hm_dup(c->sink, (size_t)c->h * sizeof(float));
    dout = hm_dup(c->dout, no * sizeof(float));
    dl = hm_dup(c->dl, nl * sizeof(float));
  }
  mouts m;
  attn_merge_params mp;
  params_set(c, op, lp, sink, dout, dl, &m, &mp);
  mp.num_threads = r->threads;
  char msg[256] = "";
  mp.error_message = msg;
  mp.error_message_size = sizeof msg;
  const hm_kind *kd = &hm_kind_merge;
  int bad = 0;
  attn_status st = attn_merge(r->ctx, &mp);
  w->counts[HM_MERGE]++;
  if (st != ATTN_OK) {
    hm_report(w, kd, c, r, "attn_merge: %s (%s)", attn_strerror(st), msg);
    bad++;
  } else {
    bad += hm_same(w, kd, c, r, "o", m.o, c->o, no * attn_dtype_size(c->odt));
    bad += hm_same(w, kd, c, r, "lse", m.lse, c->lse, nl * sizeof(float));
  }
  if (!bad) {
    st = attn_merge_backward(r->ctx, &mp);
    w->counts[HM_MERGE_BWD]++;
    if (st != ATTN_OK) {
      hm_report(w, kd, c, r, "attn_merge_backward: %s (%s)", attn_strerror(st),
                msg);
      bad++;
    }
    for (int64_t k = 0; k < c->n && !bad; k++) {
      bad += hm_same(w, kd, c, r, "do_parts", m.dop[k], c->dop[k],
                     no * sizeof(float));
      bad += hm_same(w, kd, c, r, "dlse_parts", m.dlp[k], c->dlp[k],
                     nl * sizeof(float));
    }
    if (!bad && c->sinks)
      bad += hm_same(w, kd, c, r, "dsinks", m.dsinks, c->dsinks,
                     (size_t)c->h * sizeof(float));
  }
  mouts_free(c, &m);
  if (r->private_data) {
    for (int64_t k = 0; k < c->n; k++)
      free(op[k]), free(lp[k]);
    free((void *)sink), free((void *)dout), free((void *)dl);
  }
  return bad;
}

static void no_priv(void *p) { (void)p; }

const hm_kind hm_kind_merge = {"merge", merge_make, merge_run,
                               no_priv, merge_free, merge_describe};
