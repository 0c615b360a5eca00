/*
 * test_numerics, section "nonfinite" (see test_numerics.c): a NaN or an
 * infinity in Q, K, V, the bias or the kv_lens padding, forward and
 * backward, against the clean run of the same problem.
 */
#define _POSIX_C_SOURCE 200809L

#include "numerics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* 2. Non-finite inputs                                                   */
/* ====================================================================== */
typedef enum { T_Q, T_K, T_V, T_BIAS, T_KVPAD } nf_target;

typedef struct nf_case {
  const char *name;
  nf_target t;
  float val;
  int64_t b, x, y, z; /* Q: (b, i, h, c); K/V: (b, j, g, c);
                         bias: (b, h, i, j) */
} nf_case;

typedef struct outs {
  float *o, *lse, *dq, *dk, *dv;
} outs;

static void outs_save(const prob *P, outs *s) {
  s->o = falloc(n_o(P)), s->lse = falloc(n_l(P)), s->dq = falloc(n_q(P));
  s->dk = falloc(n_k(P)), s->dv = falloc(n_v(P));
  memcpy(s->o, P->o, (size_t)n_o(P) * 4);
  memcpy(s->lse, P->lse, (size_t)n_l(P) * 4);
  memcpy(s->dq, P->dq, (size_t)n_q(P) * 4);
  memcpy(s->dk, P->dk, (size_t)n_k(P) * 4);
  memcpy(s->dv, P->dvv, (size_t)n_v(P) * 4);
}

static void outs_free(outs *s) {
  free(s->o), free(s->lse), free(s->dq), free(s->dk), free(s->dv);
}

static float *nf_slot(prob *P, const nf_case *c) {
  switch (c->t) {
  case T_Q:
    return P->q + qi(P, c->b, c->x, c->y) + c->z;
  case T_K:
    return P->k + ki(P, c->b, c->x, c->y) + c->z;
  case T_V:
    return P->v + vi(P, c->b, c->x, c->y) + c->z;
  case T_BIAS:
    return P->bias + si(P, c->b, c->x, c->y, c->z);
  default:
    return NULL;
  }
}

/* Does row (b, h, i) see the bad value of c (in the clean problem)? */
static int nf_affects(const prob *P, const nf_case *c, int64_t b, int64_t h,
                      int64_t i) {
  if (b != c->b)
    return 0;
  const int64_t group = P->hq / P->hk;
  switch (c->t) {
  case T_Q:
    return i == c->x && h == c->y && row_sees_any(P, b, h, i);
  case T_K:
  case T_V:
    return h / group == c->y && visible(P, b, h, i, c->x);
  case T_BIAS:
    return h == c->x && i == c->y && c->val != -INFINITY &&
           visible(P, b, h, i, c->z);
  default:
    return 0;
  }
}

/* One case on one ISA: the problem with the bad value, which rows and keys
 * it may reach, and what the checks need. */
typedef struct nf_run {
  prob *P;
  const outs *clean;
  const nf_case *c;
  attn_isa isa;
  int64_t group;
  float *slot, saved;   /* the element that holds the bad value */
  float *kpad, *vpad;   /* K and V before NaN filled the kv_lens padding */
  unsigned char *aff;   /* rows that see the bad value */
  unsigned char *kseen; /* keys an affected row sees */
  int64_t n_aff, n_unaff;
  int masks; /* the -inf bias case */
  refres r;  /* its oracle: the problem with that key masked */
  char what[200];
} nf_run;

/* A row of lse (index L) in failure messages, and its o and dq. */
#define ROWFMT "(b %lld, h %lld, i %lld)"
#define ROWARG(L)                                                              \
  (long long)((L) / (P->hq * P->sq)), (long long)((L) / P->sq % P->hq),        \
      (long long)((L) % P->sq)
#define OAT(L) oi(P, (L) / (P->hq * P->sq), (L) % P->sq, (L) / P->sq % P->hq)
#define DQAT(L) qi(P, (L) / (P->hq * P->sq), (L) % P->sq, (L) / P->sq % P->hq)

/* Which rows are affected and which keys they see: decided on the clean
 * problem. */
static void nf_mark_affected(nf_run *R) {
  const prob *P = R->P;
  const nf_case *c = R->c;
  R->aff = (unsigned char *)tc_alloc((size_t)n_l(P));
  R->n_aff = R->n_unaff = 0;
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++) {
        const int a = c->t == T_KVPAD ? 0 : nf_affects(P, c, b, h, i);
        R->aff[li(P, b, h, i)] = (unsigned char)a;
        R->n_aff += a;
        R->n_unaff += !a;
      }
  R->kseen = (unsigned char *)tc_alloc((size_t)(P->b * P->sk * P->hk));
  memset(R->kseen, 0, (size_t)(P->b * P->sk * P->hk));
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        if (R->aff[li(P, b, h, i)])
          for (int64_t j = 0; j < P->sk; j++)
            if (visible(P, b, h, i, j))
              R->kseen[(b * P->sk + j) * P->hk + h / R->group] = 1;
  if (c->t != T_KVPAD && !(c->t == T_BIAS && c->val == -INFINITY) &&
      !strstr(c->name, "masks") && !strstr(c->name, "beyond"))
    check(SEC_NF_FWD, R->isa, R->n_aff > 0 && R->n_unaff > 0,
          "%s: test setup: %lld affected and %lld unaffected rows", R->what,
          (long long)R->n_aff, (long long)R->n_unaff);
}

/* Puts the bad value of c into P (NaN into every K and V element beyond
 * kv_lens for the padding case), saving what it replaces. */
static void nf_inject(nf_run *R, prob *P, const outs *clean, const nf_case *c,
                      attn_isa isa, const char *shape) {
  memset(R, 0, sizeof *R);
  R->P = P, R->clean = clean, R->c = c, R->isa = isa;
  R->group = P->hq / P->hk;
  snprintf(R->what, sizeof R->what, "%s causal=%s: %s", shape,
           P->causal == ATTN_CAUSAL_NONE ? "none" : "bottom-right", c->name);
  if (c->t == T_KVPAD) {
    R->kpad = falloc(n_k(P)), R->vpad = falloc(n_v(P));
    memcpy(R->kpad, P->k, (size_t)n_k(P) * 4);
    memcpy(R->vpad, P->v, (size_t)n_v(P) * 4);
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t j = sk_eff(P, b); j < P->sk; j++)
        for (int64_t g = 0; g < P->hk; g++) {
          for (int64_t x = 0; x < P->d; x++)
            P->k[ki(P, b, j, g) + x] = NAN;
          for (int64_t x = 0; x < P->dv; x++)
            P->v[vi(P, b, j, g) + x] = NAN;
        }
  } else {
    R->slot = nf_slot(P, c);
    R->saved = *R->slot;
  }
  nf_mark_affected(R);
  if (R->slot)
    *R->slot = c->val;
  R->masks = c->t == T_BIAS && c->val == -INFINITY;
  if (R->masks)
    ref_compute(P, &R->r, 1);
}

static void nf_restore(nf_run *R) {
  prob *P = R->P;
  if (R->slot)
    *R->slot = R->saved;
  if (R->kpad) {
    memcpy(P->k, R->kpad, (size_t)n_k(P) * 4);
    memcpy(P->v, R->vpad, (size_t)n_v(P) * 4);
    free(R->kpad), free(R->vpad);
  }
  if (R->masks)
    ref_free(&R->r);
  free(R->aff), free(R->kseen);
}

/* ---------------------------------------------------------------------- */
/* Forward checks                                                         */
/* ---------------------------------------------------------------------- */
typedef struct nf_fwd_tally {
  int64_t bad_aff, bad_unaff, bad_col, bad_rest;
  int64_t ex_aff, ex_unaff, ex_col;
} nf_fwd_tally;

/* The row with the -inf bias: finite and equal to the oracle. */
static void nf_fwd_masked_row(const nf_run *R, int64_t b, int64_t h,
                              int64_t i) {
  const prob *P = R->P;
  const refres *r = &R->r;
  const int64_t L = li(P, b, h, i), O = oi(P, b, i, h);
  int ok = isfinite(P->lse[L]) &&
           fabs(P->lse[L] - r->lse[L]) <= 1e-5 * (1 + fabs(r->lse[L]));
  for (int64_t x = 0; x < P->dv; x++)
    ok = ok && isfinite(P->o[O + x]) && fabs(P->o[O + x] - r->o[O + x]) <= 1e-4;
  check(SEC_NF_FWD, R->isa, ok,
        "%s: row (b %lld, h %lld, i %lld) with a -inf bias: o[0] = "
        "%.6g (want %.6g), lse %.6g (want %.6g)",
        R->what, (long long)b, (long long)h, (long long)i, (double)P->o[O],
        r->o[O], (double)P->lse[L], r->lse[L]);
}

/* A row that cannot see the bad value: bitwise equal to the clean run. */
static void nf_fwd_unaffected_row(const nf_run *R, nf_fwd_tally *t, int64_t b,
                                  int64_t h, int64_t i) {
  const prob *P = R->P;
  const nf_case *c = R->c;
  const outs *clean = R->clean;
  const int64_t L = li(P, b, h, i), O = oi(P, b, i, h);
  /* a bad V in a live block may reach column z through 0 * x */
  const int vleak = c->t == T_V && b == c->b && h / R->group == c->y &&
                    block_live(P, b, h, i, c->x);
  int same = bits_equal(P->lse + L, clean->lse + L, 1);
  for (int64_t x = 0; x < P->dv; x++)
    if (!(vleak && x == c->z))
      same = same && bits_equal(P->o + O + x, clean->o + O + x, 1);
  if (!same) {
    if (t->bad_unaff++ == 0) {
      t->ex_unaff = L;
      while (t->ex_col < P->dv - 1 &&
             bits_equal(P->o + O + t->ex_col, clean->o + O + t->ex_col, 1))
        t->ex_col++;
    }
  }
}

static void nf_fwd_row(const nf_run *R, nf_fwd_tally *t, int64_t b, int64_t h,
                       int64_t i) {
  const prob *P = R->P;
  const nf_case *c = R->c;
  const int64_t L = li(P, b, h, i), O = oi(P, b, i, h);
  if (R->masks && b == c->b && h == c->x && i == c->y) {
    nf_fwd_masked_row(R, b, h, i);
    return;
  }
  if (!R->aff[L]) {
    nf_fwd_unaffected_row(R, t, b, h, i);
    return;
  }
  if (c->t == T_V) {
    /* column z not finite; the other columns and lse unchanged */
    if (isfinite(P->o[O + c->z]) && t->bad_col++ == 0)
      t->ex_aff = L;
    int same = bits_equal(P->lse + L, R->clean->lse + L, 1);
    for (int64_t x = 0; x < P->dv; x++)
      if (x != c->z && !bits_equal(P->o + O + x, R->clean->o + O + x, 1))
        same = 0;
    t->bad_rest += !same;
    return;
  }
  int ok = isnan(P->lse[L]);
  for (int64_t x = 0; x < P->dv; x++)
    ok = ok && isnan(P->o[O + x]);
  if (!ok && t->bad_aff++ == 0)
    t->ex_aff = L;
}

static void nf_fwd_report(const nf_run *R, const nf_fwd_tally *t) {
  const prob *P = R->P;
  const nf_case *c = R->c;
  const outs *clean = R->clean;
  const attn_isa isa = R->isa;
  const int64_t ex_aff = t->ex_aff, ex_unaff = t->ex_unaff, ex_col = t->ex_col;
  if (c->t != T_V) {
    check(SEC_NF_FWD, isa, t->bad_aff == 0,
          "%s: %lld of %lld affected rows not NaN; e.g. " ROWFMT
          ": o[0] = %.6g, lse = %.6g",
          R->what, (long long)t->bad_aff, (long long)R->n_aff,
          ROWARG(ex_aff < 0 ? 0 : ex_aff),
          ex_aff < 0 ? 0.0 : (double)P->o[OAT(ex_aff)],
          ex_aff < 0 ? 0.0 : (double)P->lse[ex_aff]);
  } else {
    check(SEC_NF_FWD, isa, t->bad_col == 0,
          "%s: %lld of %lld rows that see the bad V have a finite o[%lld]; "
          "e.g. " ROWFMT ": %.6g",
          R->what, (long long)t->bad_col, (long long)R->n_aff, (long long)c->z,
          ROWARG(ex_aff < 0 ? 0 : ex_aff),
          ex_aff < 0 ? 0.0 : (double)P->o[OAT(ex_aff) + c->z]);
    check(SEC_NF_FWD, isa, t->bad_rest == 0,
          "%s: %lld rows that see the bad V changed lse or another column",
          R->what, (long long)t->bad_rest);
  }
  check(SEC_NF_FWD, isa, t->bad_unaff == 0,
        "%s: %lld of %lld rows that cannot see the bad value differ from "
        "the clean run; e.g. " ROWFMT ": o[%lld] = %.6g (clean %.6g), lse "
        "= %.6g (clean %.6g)",
        R->what, (long long)t->bad_unaff, (long long)R->n_unaff,
        ROWARG(ex_unaff < 0 ? 0 : ex_unaff), (long long)ex_col,
        ex_unaff < 0 ? 0.0 : (double)P->o[OAT(ex_unaff) + ex_col],
        ex_unaff < 0 ? 0.0 : (double)clean->o[OAT(ex_unaff) + ex_col],
        ex_unaff < 0 ? 0.0 : (double)P->lse[ex_unaff],
        ex_unaff < 0 ? 0.0 : (double)clean->lse[ex_unaff]);
}

/* Forward with the bad value; 0 when it did not run. */
static int nf_forward(nf_run *R) {
  prob *P = R->P;
  const attn_status st = run_fwd(P, R->isa);
  check(SEC_NF_FWD, R->isa, st == ATTN_OK, "%s: forward status %d (%s)",
        R->what, (int)st, P->why);
  if (st != ATTN_OK)
    return 0;
  nf_fwd_tally t = {0, 0, 0, 0, -1, -1, 0};
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        nf_fwd_row(R, &t, b, h, i);
  nf_fwd_report(R, &t);
  return 1;
}

/* ---------------------------------------------------------------------- */
/* Backward checks                                                        */
/* ---------------------------------------------------------------------- */
typedef struct nf_dq_tally {
  int64_t b_aff, b_unaff, b_masked;
  int64_t ex_a, ex_u, ex_uc;
} nf_dq_tally;

static void nf_dq_row(const nf_run *R, nf_dq_tally *t, int64_t b, int64_t h,
                      int64_t i) {
  const prob *P = R->P;
  const nf_case *c = R->c;
  const outs *clean = R->clean;
  const int64_t L = li(P, b, h, i), Q = qi(P, b, i, h);
  if (R->masks && b == c->b && h == c->x && i == c->y) {
    int ok = 1;
    for (int64_t x = 0; x < P->d; x++)
      ok = ok && isfinite(P->dq[Q + x]) &&
           fabs(P->dq[Q + x] - R->r.dq[Q + x]) <= 1e-4;
    t->b_masked += !ok;
    return;
  }
  if (!R->aff[L]) {
    /* a bad K or V in a live block may reach dq through 0 * x */
    if ((c->t == T_K || c->t == T_V) && b == c->b && h / R->group == c->y &&
        block_live(P, b, h, i, c->x))
      return;
    if (!bits_equal(P->dq + Q, clean->dq + Q, P->d) && t->b_unaff++ == 0) {
      t->ex_u = L;
      while (t->ex_uc < P->d - 1 &&
             bits_equal(P->dq + Q + t->ex_uc, clean->dq + Q + t->ex_uc, 1))
        t->ex_uc++;
    }
    return;
  }
  int ok = 1;
  for (int64_t x = 0; x < P->d; x++)
    ok = ok && (c->t == T_V ? !isfinite(P->dq[Q + x]) : isnan(P->dq[Q + x]));
  if (!ok && t->b_aff++ == 0)
    t->ex_a = L;
}

/* dQ: an affected row NaN (not finite for a bad V), the others bitwise
 * equal to the clean run, the row with the -inf bias equal to the oracle. */
static void nf_check_dq(const nf_run *R) {
  const prob *P = R->P;
  const outs *clean = R->clean;
  const attn_isa isa = R->isa;
  nf_dq_tally t = {0, 0, 0, -1, -1, 0};
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        nf_dq_row(R, &t, b, h, i);
  const int64_t ex_a = t.ex_a, ex_u = t.ex_u, ex_uc = t.ex_uc;
  if (R->masks)
    check(SEC_NF_BWD, isa, t.b_masked == 0,
          "%s: dq of the row with the -inf bias differs from the oracle",
          R->what);
  check(SEC_NF_BWD, isa, t.b_aff == 0,
        "%s: dq of %lld of %lld affected rows not %s; e.g. " ROWFMT
        ": dq[0] = %.6g",
        R->what, (long long)t.b_aff, (long long)R->n_aff,
        R->c->t == T_V ? "all non-finite" : "all NaN",
        ROWARG(ex_a < 0 ? 0 : ex_a),
        ex_a < 0 ? 0.0 : (double)P->dq[DQAT(ex_a)]);
  check(SEC_NF_BWD, isa, t.b_unaff == 0,
        "%s: dq of %lld of %lld unaffected rows differs from the clean "
        "run; e.g. " ROWFMT ": dq[%lld] = %.6g (clean %.6g)",
        R->what, (long long)t.b_unaff, (long long)R->n_unaff,
        ROWARG(ex_u < 0 ? 0 : ex_u), (long long)ex_uc,
        ex_u < 0 ? 0.0 : (double)P->dq[DQAT(ex_u) + ex_uc],
        ex_u < 0 ? 0.0 : (double)clean->dq[DQAT(ex_u) + ex_uc]);
}

typedef struct nf_key_tally {
  int64_t k_fin, v_fin, k_seen, k_chg, pad_bad;
} nf_key_tally;

/* Whether an affected row (or the bad key itself) in a live block may reach
 * key (b, j, g) through 0 * x. */
static int nf_key_leak(const nf_run *R, int64_t b, int64_t j, int64_t g) {
  const prob *P = R->P;
  const nf_case *c = R->c;
  int leak = (c->t == T_K || c->t == T_V) && j == c->x;
  for (int64_t h = g * R->group; h < (g + 1) * R->group && !leak; h++)
    for (int64_t i = 0; i < P->sq && !leak; i++)
      leak = R->aff[li(P, b, h, i)] && block_live(P, b, h, i, j);
  return leak;
}

static void nf_key(const nf_run *R, nf_key_tally *t, int64_t b, int64_t j,
                   int64_t g) {
  const prob *P = R->P;
  const outs *clean = R->clean;
  const int64_t K = ki(P, b, j, g), V = vi(P, b, j, g);
  if (j >= sk_eff(P, b)) {
    for (int64_t x = 0; x < P->d; x++)
      t->pad_bad += P->dk[K + x] != 0.0f;
    for (int64_t x = 0; x < P->dv; x++)
      t->pad_bad += P->dvv[V + x] != 0.0f;
  }
  if (R->masks)
    return;
  if (R->kseen[(b * P->sk + j) * P->hk + g]) {
    t->k_seen++;
    t->k_fin += all_finite(P->dk + K, P->d);
    if (R->c->t != T_V)
      t->v_fin += all_finite(P->dvv + V, P->dv);
  } else if (!bits_equal(P->dk + K, clean->dk + K, P->d) ||
             !bits_equal(P->dvv + V, clean->dv + V, P->dv)) {
    t->k_chg += !nf_key_leak(R, b, j, g);
  }
}

/* Keys: seen by an affected row -> not silently finite; others bitwise
 * equal (extra); kv_lens padding -> 0. */
static void nf_check_keys(const nf_run *R) {
  const prob *P = R->P;
  const attn_isa isa = R->isa;
  nf_key_tally t = {0, 0, 0, 0, 0};
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t j = 0; j < P->sk; j++)
      for (int64_t g = 0; g < P->hk; g++)
        nf_key(R, &t, b, j, g);
  if (!R->masks) {
    check(SEC_NF_BWD, isa, t.k_fin == 0 && t.v_fin == 0,
          "%s: of %lld keys an affected row sees, %lld have an all-finite "
          "dk and %lld an all-finite dv (silently finite)",
          R->what, (long long)t.k_seen, (long long)t.k_fin, (long long)t.v_fin);
    check(SEC_NF_EXTRA, isa, t.k_chg == 0,
          "%s: dk/dv of %lld keys that no affected row sees differ from "
          "the clean run",
          R->what, (long long)t.k_chg);
    if (R->c->t == T_V)
      check(SEC_NF_EXTRA, isa, bits_equal(P->dvv, R->clean->dv, n_v(P)),
            "%s: dv changed (it does not depend on V)", R->what);
  }
  check(SEC_NF_BWD, isa, t.pad_bad == 0,
        "%s: %lld dk/dv elements of kv_lens padding keys are not 0", R->what,
        (long long)t.pad_bad);
}

/* Backward, from the forward's o and lse. */
static void nf_backward(nf_run *R) {
  prob *P = R->P;
  const attn_status st = run_bwd(P, R->isa);
  check(SEC_NF_BWD, R->isa, st == ATTN_OK, "%s: backward status %d (%s)",
        R->what, (int)st, P->why);
  if (st != ATTN_OK)
    return;
  nf_check_dq(R);
  nf_check_keys(R);
}

static void nf_run_case(prob *P, const outs *clean, const nf_case *c,
                        attn_isa isa, const char *shape) {
  nf_run R;
  nf_inject(&R, P, clean, c, isa, shape);
  if (nf_forward(&R))
    nf_backward(&R);
  nf_restore(&R);
}

#undef ROWFMT
#undef ROWARG
#undef OAT
#undef DQAT

/* ---------------------------------------------------------------------- */
/* The problems and their cases                                           */
/* ---------------------------------------------------------------------- */
typedef enum { V_PLAIN, V_BIAS, V_MASK, V_WINDOW } nf_variant;

/* Shape 0: b2 5x5 hq2 hk2; shape 1: b2 70x130 hq4 hk2 with kv_lens. */
static prob *nf_build(int shape, int vr, int cz) {
  prob *P = shape == 0 ? prob_new(2, 5, 5, 2, 2, 16, 16)
                       : prob_new(2, 70, 130, 4, 2, 16, 16);
  tc_rng rng = {0x4E460000ull + (uint64_t)(shape * 100 + vr * 10 + cz)};
  P->causal = cz ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  for (int64_t x = 0; x < n_q(P); x++)
    P->q[x] = (float)tc_normal(&rng);
  for (int64_t x = 0; x < n_k(P); x++)
    P->k[x] = (float)tc_normal(&rng);
  for (int64_t x = 0; x < n_v(P); x++)
    P->v[x] = (float)tc_normal(&rng);
  for (int64_t x = 0; x < n_o(P); x++)
    P->dout[x] = (float)tc_normal(&rng);
  if (shape == 1) {
    P->kv_store[0] = 130;
    P->kv_store[1] = 101;
    P->kv_lens = P->kv_store;
  }
  if (vr == V_BIAS) {
    P->bias = falloc(n_s(P));
    for (int64_t x = 0; x < n_s(P); x++)
      P->bias[x] = (float)(0.5 * tc_normal(&rng));
  }
  if (vr == V_MASK) {
    P->mask = (unsigned char *)tc_alloc((size_t)n_s(P));
    for (int64_t x = 0; x < n_s(P); x++)
      P->mask[x] = (unsigned char)(tc_unit(&rng) < 0.7);
  }
  if (vr == V_WINDOW)
    P->wl = 20, P->wr = 5;
  return P;
}

/* The cases of (shape, variant, causal) into cases[24]; returns how many. */
static int nf_cases(int shape, int vr, int cz, nf_case *cases) {
  int nc = 0;
#define ADD(...)                                                               \
  do {                                                                         \
    const nf_case c_ = {__VA_ARGS__};                                          \
    cases[nc++] = c_;                                                          \
  } while (0)
  const int64_t iq = shape ? 50 : 3, hqb = shape ? 2 : 1;
  const int64_t jk = shape ? 100 : 2, jv = shape ? 90 : 1;
  if (vr == V_PLAIN) {
    ADD("Q NaN", T_Q, NAN, 1, iq, hqb, 3);
    ADD("Q +inf", T_Q, INFINITY, 1, iq, hqb, 3);
    ADD("Q -inf", T_Q, -INFINITY, 1, iq, hqb, 3);
    ADD("K NaN", T_K, NAN, 0, jk, 0, 5);
    ADD("K +inf", T_K, INFINITY, 0, jk, 0, 5);
    ADD("K -inf", T_K, -INFINITY, 0, jk, 0, 5);
    ADD("V NaN", T_V, NAN, 1, jv, 1, 2);
    ADD("V +inf", T_V, INFINITY, 1, jv, 1, 2);
    if (shape == 1)
      ADD("K and V NaN beyond kv_lens", T_KVPAD, NAN, 1, 0, 0, 0);
  } else if (vr == V_BIAS) {
    const int64_t bh = shape ? 3 : 0, bi = shape ? 20 : 3;
    const int64_t bj = shape ? 40 : 1;
    ADD("bias NaN", T_BIAS, NAN, 1, bh, bi, bj);
    ADD("bias +inf", T_BIAS, INFINITY, 1, bh, bi, bj);
    ADD("bias -inf (masks)", T_BIAS, -INFINITY, 1, bh, bi, bj);
    if (cz) /* masked by causal */
      ADD("bias NaN where causal masks", T_BIAS, NAN, shape ? 0 : 1,
          shape ? 1 : 1, shape ? 5 : 1, shape ? 100 : 4);
    if (shape == 1) /* masked by kv_lens */
      ADD("bias NaN beyond kv_lens", T_BIAS, NAN, 1, 0, 10, 120);
  } else if (vr == V_MASK) {
    ADD("K NaN, mask tensor", T_K, NAN, 0, 77, 1, 0);
    ADD("V NaN, mask tensor", T_V, NAN, 0, 77, 1, 0);
    ADD("Q NaN, mask tensor", T_Q, NAN, 1, 33, 3, 7);
  } else {
    ADD("K NaN, window (20, 5)", T_K, NAN, 1, 60, 1, 4);
    ADD("V NaN, window (20, 5)", T_V, NAN, 1, 60, 1, 4);
  }
#undef ADD
  return nc;
}

/* Every case on every supported ISA, each against that ISA's clean run. */
static void nf_run_isas(prob *P, const nf_case *cases, int nc,
                        const char *shape_name) {
  for (int ii = 0; ii < N_ISAS; ii++) {
    const attn_isa isa = all_isas[ii];
    if (!attn_isa_supported(isa))
      continue;
    attn_status s1 = run_fwd(P, isa);
    attn_status s2 = s1 == ATTN_OK ? run_bwd(P, isa) : s1;
    check(SEC_NF_FWD, isa, s1 == ATTN_OK && s2 == ATTN_OK,
          "%s: clean run failed (%d, %d: %s)", shape_name, (int)s1, (int)s2,
          P->why);
    if (s1 != ATTN_OK || s2 != ATTN_OK)
      continue;
    outs clean;
    outs_save(P, &clean);
    for (int k = 0; k < nc; k++)
      nf_run_case(P, &clean, &cases[k], isa, shape_name);
    outs_free(&clean);
  }
}

void section_nonfinite(void) {
  printf("== non-finite inputs ==\n");
  static const char *const vname[4] = {"plain", "bias", "mask", "window"};
  for (int shape = 0; shape < 2; shape++) {
    for (int vr = 0; vr < 4; vr++) {
      if (shape == 0 && vr >= V_MASK)
        continue;
      for (int cz = 0; cz < 2; cz++) {
        prob *P = nf_build(shape, vr, cz);
        nf_case cases[24];
        const int nc = nf_cases(shape, vr, cz, cases);
        char shape_name[96];
        snprintf(shape_name, sizeof shape_name, "b2 %lldx%lld hq%lld hk%lld %s",
                 (long long)P->sq, (long long)P->sk, (long long)P->hq,
                 (long long)P->hk, vname[vr]);
        nf_run_isas(P, cases, nc, shape_name);
        prob_free(P);
      }
    }
  }
}
