/*
 * Shared parts of test_numerics (test "numerics"; the sections and the rules
 * they check are described at the top of test_numerics.c):
 *   test_numerics.c       main, the tally and check()
 *   numerics_common.c     the problem (alloc, params, run), which keys a row
 *                         sees, the double-precision oracle, small helpers
 *   numerics_huge.c       section "huge": huge finite logits
 *   numerics_nonfinite.c  section "nonfinite": non-finite inputs
 *   numerics_accuracy.c   section "accuracy": accuracy at long key lengths
 */
#ifndef ATTN_TEST_NUMERICS_H
#define ATTN_TEST_NUMERICS_H

#include <attn.h>

#include "test_common.h"

#include <math.h>
#include <stdint.h>

/* ---------------------------------------------------------------------- */
/* Tally per section and ISA (test_numerics.c)                            */
/* ---------------------------------------------------------------------- */
enum {
  SEC_HUGE_FWD,
  SEC_HUGE_BWD,
  SEC_NF_FWD,
  SEC_NF_BWD,
  SEC_NF_EXTRA,
  SEC_ACC_FWD,
  SEC_ACC_BWD,
  SEC_COUNT
};

/* Counts one check of section sec on isa; a failure prints one line (at
 * most ATTN_NUMERICS_MAX_FAILS per section and ISA). */
void check(int sec, attn_isa isa, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The ISAs in the order they are tested (only those the CPU supports run). */
#define N_ISAS 5 /* generic .. amxbf16 */
extern const attn_isa all_isas[N_ISAS];

/* ---------------------------------------------------------------------- */
/* A problem: contiguous [b, s, h, d] f32 tensors, full-shape bias/mask    */
/* ---------------------------------------------------------------------- */
typedef struct prob {
  int64_t b, sq, sk, hq, hk, d, dv;
  float scale; /* 0: 1/sqrt(d) */
  attn_causal causal;
  int64_t wl, wr;
  float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dvv;
  float *bias;         /* NULL or [b, hq, sq, sk] */
  unsigned char *mask; /* NULL or [b, hq, sq, sk] */
  int32_t *kv_lens;    /* NULL or kv_store */
  int32_t kv_store[8];
  char why[256];
} prob;

static inline int64_t n_q(const prob *P) { return P->b * P->sq * P->hq * P->d; }
static inline int64_t n_k(const prob *P) { return P->b * P->sk * P->hk * P->d; }
static inline int64_t n_v(const prob *P) {
  return P->b * P->sk * P->hk * P->dv;
}
static inline int64_t n_o(const prob *P) {
  return P->b * P->sq * P->hq * P->dv;
}
static inline int64_t n_l(const prob *P) { return P->b * P->hq * P->sq; }
static inline int64_t n_s(const prob *P) {
  return P->b * P->hq * P->sq * P->sk;
}
static inline int64_t qi(const prob *P, int64_t b, int64_t i, int64_t h) {
  return ((b * P->sq + i) * P->hq + h) * P->d;
}
static inline int64_t ki(const prob *P, int64_t b, int64_t j, int64_t g) {
  return ((b * P->sk + j) * P->hk + g) * P->d;
}
static inline int64_t vi(const prob *P, int64_t b, int64_t j, int64_t g) {
  return ((b * P->sk + j) * P->hk + g) * P->dv;
}
static inline int64_t oi(const prob *P, int64_t b, int64_t i, int64_t h) {
  return ((b * P->sq + i) * P->hq + h) * P->dv;
}
static inline int64_t li(const prob *P, int64_t b, int64_t h, int64_t i) {
  return (b * P->hq + h) * P->sq + i;
}
static inline int64_t si(const prob *P, int64_t b, int64_t h, int64_t i,
                         int64_t j) {
  return ((b * P->hq + h) * P->sq + i) * P->sk + j;
}
static inline double eff_scale(const prob *P) {
  return P->scale != 0.0f ? (double)P->scale : 1.0 / sqrt((double)P->d);
}

/* Effective key count of batch b. */
static inline int64_t sk_eff(const prob *P, int64_t b) {
  return P->kv_lens ? P->kv_lens[b] : P->sk;
}

static inline float *falloc(int64_t n) {
  return (float *)tc_alloc((size_t)n * sizeof(float));
}

prob *prob_new(int64_t b, int64_t sq, int64_t sk, int64_t hq, int64_t hk,
               int64_t d, int64_t dv);
void prob_free(prob *P);
void prob_params(prob *P, attn_params *p, attn_isa isa);

/* Run the library's forward / backward on P (outputs pre-filled with 777). */
attn_status run_fwd(prob *P, attn_isa isa);
attn_status run_bwd(prob *P, attn_isa isa);

/* Whether query row (b, h, i) may see key j: kv_lens, causal, window, mask
 * tensor and -inf bias (attn.h's contract). */
int visible(const prob *P, int64_t b, int64_t h, int64_t i, int64_t j);

/* Whether the (query tile, key tile) block of (i, j) has a visible element
 * (the documented exception, docs/decisions.md, "Numerics"). */
int block_live(const prob *P, int64_t b, int64_t h, int64_t i, int64_t j);

int row_sees_any(const prob *P, int64_t b, int64_t h, int64_t i);

/* ---------------------------------------------------------------------- */
/* Double-precision oracle (finite inputs)                                */
/* ---------------------------------------------------------------------- */
typedef struct refres {
  double *o, *lse, *dq, *dk, *dv; /* layouts of prob's tensors */
} refres;

void ref_free(refres *r);
double *dalloc0(int64_t n);
void ref_rows(const prob *P, refres *r, int bwd, int64_t bh0, int64_t bh1,
              double *dk_acc, double *dv_acc);
void ref_alloc(const prob *P, refres *r, int bwd);
void ref_compute(const prob *P, refres *r, int bwd);

double max_abs_f(const float *x, int64_t n);
int all_finite(const float *x, int64_t n);
int bits_equal(const float *a, const float *b, int64_t n);

/* ---------------------------------------------------------------------- */
/* The sections                                                           */
/* ---------------------------------------------------------------------- */
void section_huge(void);
void section_nonfinite(void);
void section_accuracy(int quick);

#endif
