/*
 * Backward oracle: reference gradients of attn_backward's contract
 * (include/attn.h), for the tests only.
 *
 *   oracle_backward      double precision, analytic gradients straight from
 *                        the documented formula: the oracle computes its own
 *                        P, O and LSE in double from q, k, v (it trusts
 *                        nothing the forward wrote);
 *   oracle_backward_f32  the same loops in plain f32 from the forward's
 *                        stored O and LSE (p->o, p->lse), as a naive
 *                        implementation of the same algorithm would do,
 *                        outputs rounded to their dtypes: the "naive
 *                        same-precision" reference of the error policy.
 *
 * Masks and ALiBi come from oracle_mask.h and oracle_pos.h, as for the
 * forward oracle.
 *
 * Result layout (contiguous whatever the views look like):
 *   dq [q.shape[0], q.shape[1], heads_q, d]     dk [k.shape[0], k.shape[1],
 *   heads_kv, d]   dv [.., heads_kv, dv]        dbias: bias.shape, row-major
 *   drel_bias [rel_buckets, heads_q] (rel_bias's layout)
 */
#ifndef ATTN_TEST_ORACLE_BWD_H
#define ATTN_TEST_ORACLE_BWD_H

#include "oracle_mask.h"

/* dq, dk, dv, dbias, drel_bias (the T5 table's gradient) */
#define ORACLE_NGRADS 6

typedef struct oracle_grads {
  int64_t n[ORACLE_NGRADS];    /* elements of each (0 = not wanted)        */
  double *g[ORACLE_NGRADS];    /* dq, dk, dv, dbias, drel_bias, dsinks     */
  double gmax[ORACLE_NGRADS];  /* max |g| per tensor                      */
  double *cond[ORACLE_NGRADS]; /* per element: first-order change under f32
                                  rounding (oracle_backward only; NULL in
                                  the naive reference), see below       */
} oracle_grads;

/* Both return 0, or -1 when out of memory. p must be valid for
 * attn_backward (the f32 version reads p->o and p->lse). */
int oracle_backward(const attn_params *p, oracle_grads *out);
int oracle_backward_f32(const attn_params *p, oracle_grads *out);
void oracle_grads_free(oracle_grads *g);

/* Loss L = sum(dout * O) computed in double by the oracle's forward; used by
 * the finite-difference check of oracle_backward. */
double oracle_loss(const attn_params *p);

/* Names of the gradients: "dq", "dk", "dv", "dbias", "drel_bias". */
extern const char *const oracle_grad_names[ORACLE_NGRADS];

/* Element x (contiguous oracle index) of gradient t of the kernel's views. */
double oracle_grad_value(const attn_params *p, int t, int64_t x);

/*
 * Kernel gradients (p->dq, dk, dv, dbias, ...) against the oracle. Pass rule
 * per element x of gradient tensor t (the forward's, FlashAttention's, with
 * the forward's conditioning term):
 *   |kernel - oracle| <= 2 * max |naive f32 - oracle| + max(floor, cond(x))
 * floor = 1e-5 * max|oracle| over dq, dk, dv and this tensor + 1e-7
 * (+ max|oracle of this tensor| * 2^-8 for bf16, 2^-11 for f16 outputs).
 * cond(x) is the element's typical first-order change when every f32
 * rounding of an algorithm of this shape moves its operand, the moves taken
 * as independent (root of the sum of squares):
 *   - each score s_ij by its f32 error ds_ij (the forward's rule, plus
 *     2^-24 |max_j s_ij|), which moves P_ij = exp(s_ij - lse_i) by
 *     P_ij ds_ij; the row's lse by sqrt(sum_j (P_ij ds_ij)^2) (common to the
 *     row); D_i = rowsum(dO_i O_i), O coming from the forward's own
 *     roundings, by sqrt(sum_j (P_ij ds_ij (dP_ij - D_i))^2) (common too);
 *   - dP_ij, D_i and dS_ij = P_ij (dP_ij - D_i) by their own roundings
 *     (2^-24 times the uncancelled magnitudes);
 *   - the gradient's sum of n terms by 2^-24 sqrt(n) times the root of the
 *     sum of its squared terms (the forward's sqrt(d) for a dot product).
 * For ordinary inputs cond stays below the floor and the rule is exactly
 * FlashAttention's; it takes over where a gradient is a sum of large terms
 * that cancel (keys of magnitude 16 nearly parallel, logits of hundreds),
 * where which of two f32 roundings wins is luck and the naive reference's
 * error says nothing about the kernel's. ATTN_TEST_NO_COND=1 drops it.
 * Every gradient element must be finite.
 */
typedef struct oracle_grad_cmp {
  double err[ORACLE_NGRADS], naive[ORACLE_NGRADS], floor[ORACLE_NGRADS];
  double budget[ORACLE_NGRADS];  /* max over x of err(x) / allowed(x)      */
  double cond[ORACLE_NGRADS];    /* max cond(x) of each tensor             */
  int64_t n_cond[ORACLE_NGRADS]; /* elements where cond(x) > floor        */
  int64_t nonfinite[ORACLE_NGRADS];
  char problem[320]; /* first failing tensor, "" when none */
  int ok;
} oracle_grad_cmp;

void oracle_grads_compare(const attn_params *p, const oracle_grads *ref,
                          const oracle_grads *nv, oracle_grad_cmp *c);

#endif /* ATTN_TEST_ORACLE_BWD_H */
