/*
 * Forward oracle: reference implementations of attn_forward's contract
 * (include/attn.h), for the tests only.
 *
 *   oracle_forward    double precision, straight from the documented formula;
 *   oracle_naive_f32  the same loops in plain f32 (f32 accumulation, expf),
 *                     output rounded to p->o.dtype: the "naive same-precision"
 *                     implementation of FlashAttention's error policy.
 *
 * Both read q, k, v, bias and mask through their strided attn_tensor views
 * (any dtype), so they see exactly the rounded inputs the kernel sees, and
 * both read masks and ALiBi through oracle_mask.h and oracle_pos.h.
 *
 * Result layout (always contiguous, whatever p->o looks like):
 *   o     [q.shape[0], q.shape[1], heads_q, head_dim_v]
 *   lse   [q.shape[0], heads_q, q.shape[1]]
 *   empty [q.shape[0], heads_q, q.shape[1]]  1 = the row sees no key
 * With cu_seqlens q.shape[0] is 1, so lse is [heads_q, total_q] as in attn.h.
 */
#ifndef ATTN_TEST_ORACLE_FWD_H
#define ATTN_TEST_ORACLE_FWD_H

#include "oracle_mask.h"

typedef struct oracle_ref {
  int64_t n_o;          /* elements of o                                  */
  int64_t n_rows;       /* elements of lse / empty                        */
  double *o;            /* see layout above                               */
  double *lse;          /* -inf for empty rows                            */
  unsigned char *empty; /* 1 = no key visible (o = 0, lse = -inf)         */
  double *cond_o;       /* [rows] first-order change of the row's o (max
                           over columns) when each score moves by its f32
                           rounding error; see oracle_compare            */
  double *cond_lse;     /* [rows] the same for lse                        */
  double max_abs_o;     /* over the output                                */
  double max_abs_v;     /* over every V element a row may read            */
  double max_abs_lse;   /* over the finite LSE values                     */
  int64_t n_empty;      /* number of empty rows                           */
} oracle_ref;

typedef struct oracle_naive {
  int64_t n_o, n_rows;
  float *o;   /* rounded to p->o.dtype, then back to f32 */
  float *lse; /* f32 */
} oracle_naive;

/* Dropout's factor of element (i, j) of sequence g, query head h: 1 when
 * p->dropout_p is 0, else attn_dropout_keep(...) ? 1 / (1 - p) : 0 in
 * double (the mask is the library's public function: the tests' only way
 * to read it). */
double oracle_dropout(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                      int64_t i, int64_t j);

/* Allocate and compute. p must be valid (attn_forward_check == ATTN_OK);
 * they return 0, or -1 on an allocation failure. */
int oracle_forward(const attn_params *p, oracle_ref *ref);
int oracle_naive_f32(const attn_params *p, oracle_naive *nv);
void oracle_ref_free(oracle_ref *ref);
void oracle_naive_free(oracle_naive *nv);

/*
 * Kernel output (p->o, p->lse) against the oracle. Pass rule (FlashAttention):
 *
 *   err(kernel) <= 2 * err(naive f32) + max(floor, cond(row))
 *
 * with err(naive) the max absolute error of the naive f32 reference over the
 * whole output, err(kernel) the error of each element, and the floor
 *   o:   1e-5 * max|V| + sqrt(keys + 1) * 2^-149 (roundings below f32's
 *        normal range err by an absolute amount), plus max|o| * 2^-8 +
 *        2^-133 (bf16 output) / max|o| * 2^-11 + 2^-24 (f16), the output
 *        type's relative precision and subnormal spacing
 *   lse: 1e-5 * (1 + max|lse|)
 * cond(row) is the row's sensitivity to f32 rounding of its scores:
 *   sqrt(sum_j (p_j * ds_j * max_c |v_jc - o_c|)^2), with the typical f32
 *   score error ds_j = 2^-24 * (sqrt(d) * |scale| * sqrt(sum_c (q_c k_jc)^2)
 *   + 2 |s_j| + |max_j s_j|).
 * For ordinary inputs it stays below the floor (so the rule is exactly
 * FlashAttention's); it only takes over for huge logits with near ties, where
 * which of two f32 roundings wins is luck and the naive reference's error
 * says nothing about the kernel's.
 * Environment ATTN_TEST_NO_COND=1 drops it (plain FlashAttention rule).
 * Besides: rows without keys must be exactly o = 0 and lse = -inf; every
 * other value must be finite (no NaN, no inf). lse is checked only if
 * p->lse is set.
 */
typedef struct oracle_cmp {
  double err_o, err_o_naive, floor_o;
  double err_lse, err_lse_naive, floor_lse;
  double cond_o;          /* max cond(row) of o over the rows           */
  double budget_o;        /* max err / (2 * naive + max(floor, cond))   */
  double budget_lse;      /* same for lse                               */
  int64_t n_nonfinite;    /* NaN/inf where a finite value is expected   */
  int64_t n_empty_bad;    /* empty rows with o != 0 or lse != -inf      */
  int64_t n_wrong_inf;    /* -inf lse on a row that does see keys       */
  int64_t worst_index[4]; /* (b|0, row, head, col) of the worst o budget */
  char problem[256];      /* first problem found, "" when none          */
  int ok;                 /* 1 = pass                                   */
} oracle_cmp;

void oracle_compare(const attn_params *p, const oracle_ref *ref,
                    const oracle_naive *nv, oracle_cmp *c);

#endif /* ATTN_TEST_ORACLE_FWD_H */
