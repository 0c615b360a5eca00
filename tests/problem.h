/*
 * The one problem description of the tests, its random generator and its
 * builder.
 *
 * A tp_problem says everything about one attention call: shapes, head
 * ratio, layouts and strides, dtypes and every option (scale, softcap,
 * ALiBi, bias and mask with broadcasting, causal alignment, window,
 * prefix-LM, kv_lens, packed sequences, position offsets, a compiled mask,
 * the backward's gradients, threads, context, workspace). It is either
 * drawn by tp_generate (a seeded random case, within a tp_profile's size
 * limits) or filled by hand from tp_problem_init. tp_build then allocates
 * and fills every buffer and sets an attn_params: NaN in every padding
 * gap and in every key the call must not read, a sentinel around the
 * outputs (checked by tp_untouched).
 *
 * Adding an option: one field here, one draw in tp_generate, one branch in
 * tp_build, one rule in the oracle (oracle_mask.c, oracle_pos.c, or the
 * score in oracle_fwd.c / oracle_bwd.c); every test then covers it.
 *
 * Switches:
 *   environment ATTN_TEST_NEW_OPTIONS=0   the generator and the tests leave
 *       out prefix_len, position offsets and compiled masks (the 0.2
 *       options) and the T5 table (0.3), so that the rest can be checked
 *       while the library side is unfinished; default 1.
 *   CMake ATTN_TEST_MASK_COMPILE (AUTO/ON/OFF)   links mask_link.c (the
 *       real attn_mask_compile) or mask_link_stub.c; see CMakeLists.txt.
 */
#ifndef ATTN_TEST_PROBLEM_H
#define ATTN_TEST_PROBLEM_H

#include "attn.h"
#include "test_common.h"

#include <stdio.h>

#define TP_MAX_SEQS 5

/* Tensors with a layout of their own. */
enum { TP_Q, TP_K, TP_V, TP_O, TP_DOUT, TP_DQ, TP_DK, TP_DV, TP_NT };

/* Broadcast mode of one axis of bias or mask. */
enum { TP_AX_FULL, TP_AX_ONE, TP_AX_ZERO };

typedef struct tp_problem {
  int index;     /* case number (-1: hand-picked)                     */
  uint64_t seed; /* of the case; tp_build draws data from it          */
  /* --- shapes --------------------------------------------------------- */
  int64_t batch;  /* tensor batch (1 with varlen)                     */
  int64_t hq, hk; /* heads                                            */
  int64_t sq, sk; /* tensor seq lengths (totals with varlen)          */
  int64_t d, dv;  /* head dims                                        */
  int varlen;     /* cu_seqlens used                                  */
  int64_t nseq;   /* sequences (varlen_batch, or batch)               */
  int32_t cu_q[TP_MAX_SEQS + 1], cu_k[TP_MAX_SEQS + 1];
  int64_t tail_q, tail_k; /* varlen: rows past the last sequence     */
  int kvlens;             /* kv_lens given                            */
  int32_t kv_lens[TP_MAX_SEQS];
  int decode; /* a few queries, many keys (for the tables)            */
  /* --- storage -------------------------------------------------------- */
  attn_dtype in_dt; /* q, k, v, dout                               */
  int mixed;        /* v and dout in vd_dt instead (not packed)    */
  attn_dtype vd_dt;
  attn_dtype out_dt;  /* o                                           */
  attn_dtype g_dt[3]; /* dq, dk, dv                                  */
  int order[TP_NT];   /* 0 = bshd, 1 = bhsd                          */
  int padded[TP_NT];  /* padding between rows / heads / batches      */
  int dstride[TP_NT]; /* stride of the head_dim axis (1 or 2)        */
  int packed;         /* q, k, v interleaved in one buffer           */
  int kv_bcast;       /* k and v batch stride 0                      */
  int wild_strides;   /* size-1 axes get random strides              */
  int huge;           /* inputs ~ +-100                              */
  /* --- scores --------------------------------------------------------- */
  float scale, softcap;
  int alibi; /* 1 = standard slopes, 2 = random slopes                */
  int bias, bias_mode[4], bias_neginf, bias_padded;
  double bias_mag;
  /* --- masks ---------------------------------------------------------- */
  attn_causal causal;
  int64_t wl, wr;
  int mask, mask_mode[4], mask_false_rows, mask_padded;
  double mask_p;
  int64_t prefix_len; /* -1 = off                                     */
  /* --- positions ------------------------------------------------------ */
  int64_t q_pos_offset, k_pos_offset;
  int pos_per_seq; /* q_pos_offsets / k_pos_offsets given             */
  int64_t q_pos_offsets[TP_MAX_SEQS], k_pos_offsets[TP_MAX_SEQS];
  int compiled; /* attn_mask_compile once, p.compiled_mask for all calls */
  /* --- T5 relative-position bias (0.3) -------------------------------- */
  int t5;                  /* rel_bias table [t5_buckets, hq] given    */
  int64_t t5_buckets;      /* rel_buckets                              */
  int64_t t5_max_distance; /* rel_max_distance                         */
  int t5_bidirectional;    /* rel_bidirectional                        */
  int t5_neginf;           /* some buckets -inf (masks those distances) */
  double t5_mag;           /* scale of the table's values              */
  /* --- attention sinks (0.4) ----------------------------------------- */
  int sinks;        /* sinks [hq] given                                 */
  int sinks_neginf; /* some heads -inf (no sink)                        */
  double sinks_mag; /* scale of the logits                              */
  int dsinks;       /* and dsinks (backward)                            */
  /* --- backward ------------------------------------------------------- */
  int grads; /* dout, dq, dk, dv attached                           */
  int dbias; /* and dbias                                           */
  int drel;  /* and drel_bias (with t5)                             */
  /* --- execution ------------------------------------------------------ */
  int threads, use_ctx, with_lse, workspace;
  int determinism; /* the backward test also compares thread counts  */
} tp_problem;

/* Size limits and probabilities of one test's random cases. */
typedef struct tp_profile {
  const char *name;
  int64_t max_len, max_len_big; /* longest sequence drawn              */
  double p_big;                 /* chance of the _big limits           */
  double work, work_big;        /* cap of sum seq_q*seq_k*hq*(d + dv)  */
  int64_t max_heads;
  double p_huge, p_decode, p_bias_mag5;
  int grads; /* draw the backward's fields                            */
} tp_profile;

extern const tp_profile tp_profile_forward, tp_profile_backward;

/* 1 unless the environment says ATTN_TEST_NEW_OPTIONS=0. */
int tp_new_options(void);
/* Compiled masks usable: linked (mask_link.c) and new options on. */
int tp_compiled_masks(void);

/* Hand-picked problems: defaults (f32, contiguous bshd, no option, 1
 * thread, lse on), then the dense shapes. */
void tp_problem_init(tp_problem *c, int64_t batch, int64_t hq, int64_t hk,
                     int64_t sq, int64_t sk, int64_t d, int64_t dv);
/* Packed sequences of lengths lq[b], lk[b] (sets batch 1, sq, sk). */
void tp_problem_varlen(tp_problem *c, int64_t nseq, const int64_t *lq,
                       const int64_t *lk);

/* The random case index of a run with seed run_seed. */
void tp_generate(tp_problem *c, const tp_profile *prof, uint64_t run_seed,
                 int index);
/* Work of c: sum over sequences of seq_q * seq_k * heads_q * (d + dv). */
double tp_work(const tp_problem *c);
void tp_describe(FILE *f, const tp_problem *c);
const char *tp_dtype_name(attn_dtype d);

/* ---------------------------------------------------------------------- */
/* Buffers                                                                */
/* ---------------------------------------------------------------------- */
typedef struct tp_bufs {
  void *mem[TP_NT]; /* q (or packed q/k/v), k, v, o, dout, dq, dk, dv */
  size_t bytes[TP_NT];
  uint8_t *init[TP_NT];   /* outputs: the bytes before any call        */
  uint8_t *inview[TP_NT]; /* outputs: 1 = byte of an element of the view */
  float *lse_mem;         /* 8 guards + lse + 8 guards                 */
  int64_t n_lse;
  float *bias, *dbias, *slopes;
  size_t dbias_bytes;
  float *rel, *drel;     /* rel_bias [t5_buckets][hq] and its gradient     */
  float *sinks, *dsinks; /* [hq] each                                  */
  int64_t n_sinks;
  size_t drel_bytes;
  uint8_t *mask;
  void *ws; /* the caller workspace of tp_attach_workspace       */
  int32_t cu_q[TP_MAX_SEQS + 1], cu_k[TP_MAX_SEQS + 1];
  int32_t kv_lens[TP_MAX_SEQS];
  int64_t q_offs[TP_MAX_SEQS], k_offs[TP_MAX_SEQS];
  attn_mask *cmask;           /* the compiled mask, when c->compiled */
  attn_status compile_status; /* of attn_mask_compile               */
} tp_bufs;

/* Allocates and fills every buffer of c and sets p (exits when out of
 * memory). With c->compiled the mask is compiled last and set in p
 * (m->compile_status says how that went). */
void tp_build(const tp_problem *c, attn_params *p, tp_bufs *m);
void tp_bufs_free(tp_bufs *m);
/* Outputs back to their sentinel: o (and lse) for the forward, dq, dk,
 * dv, dbias for the backward. */
void tp_reset_forward(const tp_problem *c, attn_params *p, tp_bufs *m);
void tp_reset_backward(tp_bufs *m);
/* 1 when no byte of o, dq, dk, dv outside their views and no guard of
 * lse was written; else 0 and why. */
int tp_untouched(const tp_bufs *m, char *why, size_t why_size);
/* Sizes and attaches a caller workspace (64-byte aligned) for the
 * forward (backward = 0) or the backward; 0 and why on failure. */
int tp_attach_workspace(attn_context *ctx, attn_params *p, tp_bufs *m,
                        int backward, char *why, size_t why_size);

/* Element (i0, i1, i2, i3) of t set to x in t's dtype (bool: x != 0). */
void tp_store(const attn_tensor *t, int64_t i0, int64_t i1, int64_t i2,
              int64_t i3, float x);

/* ---------------------------------------------------------------------- */
/* Compiled masks: mask_link.c (the library's) or mask_link_stub.c        */
/* ---------------------------------------------------------------------- */
extern const int tp_mask_linked; /* 1 in mask_link.c */
attn_status tp_mask_compile(const attn_params *p, attn_mask **out);
void tp_mask_free(attn_mask *m);
attn_status tp_mask_tile_counts(const attn_mask *m, int64_t *full,
                                int64_t *partial, int64_t *empty);

#endif /* ATTN_TEST_PROBLEM_H */
