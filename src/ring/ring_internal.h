/*
 * ring_internal.h - what the forward and the backward of libattn_ring share:
 * the plan (who holds which tokens, which (query slice, key slice) pairs
 * are visible, how far each K/V slice travels), the status agreement, the
 * pair calls' parameters and the copies between user tensors and the
 * ring's buffers. See include/attn/ring.h and docs/decisions.md
 * ("Issue 13: ring attention").
 */
#ifndef ATTN_RING_INTERNAL_H
#define ATTN_RING_INTERNAL_H

#include "attn/ring.h"

#include <stddef.h>
#include <stdint.h>

#define RING_MSG 224 /* bytes of a reason, with "rank R: " */

/* One contiguous run of global tokens a rank holds. */
typedef struct ring_seg {
  int64_t start; /* first global (packed) token                    */
  int64_t len;   /* tokens                                          */
  int64_t off;   /* its first row in the rank's local slice         */
} ring_seg;

typedef struct ring_rank {
  int nseg; /* 1 (contiguous) or 2 (zig-zag)                        */
  ring_seg seg[2];
  int64_t n; /* tokens held                                         */
} ring_rank;

/* Everything a call decides before any ring traffic; the same on every
 * rank (built from gathered data only), except rank. */
typedef struct ring_plan {
  MPI_Comm comm; /* a duplicate of the caller's: the ring's own tags */
  int nranks, rank;
  int backward;
  attn_params p; /* the caller's, at full size */
  int64_t S;     /* tokens of the whole (packed) sequence */
  int64_t batch; /* q.shape[0] (1 packed)         */
  int64_t ndocs; /* sequences: batch, or varlen_batch when packed */
  int64_t hq, hkv, d, dv;
  size_t esk, esv;     /* element sizes of K and V */
  ring_rank *ranks;    /* [nranks]                                     */
  unsigned char *need; /* [nranks * nranks]: r needs slice s          */
  int *chain;          /* [nranks]: slice s travels chain[s] hops      */
  int max_t;           /* max chain                                    */
  int64_t max_n;       /* largest slice                                */
  char msg[RING_MSG];  /* the agreed reason of a failure               */
} ring_plan;

/* Scratch for one pair call's per-sequence arrays. */
typedef struct ring_pair_arrays {
  int64_t *qoffs, *koffs; /* [ndocs] */
  int32_t *kvl;           /* [ndocs] */
  int32_t *cuq, *cuk;     /* [ndocs + 1] when packed */
} ring_pair_arrays;

/* Sets up plan: duplicates comm, checks this rank's input, gathers every
 * rank's checks and options and agrees on one status (every rank returns
 * the same), builds the layout and the visibility of every pair. On
 * failure the reason is in plan->msg and (when local is readable) in
 * local->error_message; ring_plan_free must still be called. */
attn_status ring_plan_make(ring_plan *plan, MPI_Comm comm,
                           const attn_ring_opts *opts, const attn_params *local,
                           size_t params_size, int backward);
void ring_plan_free(ring_plan *plan);

/* Agrees on one status across the ring: every rank passes its own (and a
 * reason when it failed); every rank gets the status of the lowest failing
 * rank and its reason ("rank R: ...") in plan->msg. Collective. */
attn_status ring_agree(ring_plan *plan, attn_status st, const char *msg);

/* Writes plan->msg to the caller's error_message (if any). */
void ring_report(const ring_plan *plan, const attn_params *local);

/* Builds the attn_params of one pair call (query segment qs of this rank,
 * key segment ks of some rank) from the caller's: positions, kv_lens and
 * cu_seqlens of the pair, causal mapped to the local alignment, no sinks,
 * dropout or diagnostics. The operand views are left for the caller.
 * Returns 1 when some element of the pair may be visible, 0 when the pair
 * is fully masked (skip it). arrays may be NULL to ask visibility only. */
int ring_pair(const ring_plan *plan, const ring_seg *qs, const ring_seg *ks,
              attn_params *out, ring_pair_arrays *arrays);

/* Pair-array scratch. 0 / ATTN_ERR_OUT_OF_MEMORY. */
attn_status ring_pair_arrays_alloc(const ring_plan *plan, ring_pair_arrays *a);
void ring_pair_arrays_free(ring_pair_arrays *a);

/* A [batch, rows, heads, dim] contiguous view of dtype at data, rows
 * [row0, row0 + len) of a buffer with n rows. */
attn_tensor ring_view(void *data, attn_dtype dtype, int64_t batch, int64_t n,
                      int64_t heads, int64_t dim, int64_t row0, int64_t len);

/* Bytes of one travelling K/V slice of n rows (K then V, their dtypes). */
size_t ring_slice_bytes(const ring_plan *pl, int64_t n);

/* K and V views of rows [row0, row0 + len) of such a slice of n rows. */
void ring_blob_views(const ring_plan *pl, char *blob, int64_t n, int64_t row0,
                     int64_t len, attn_tensor *k, attn_tensor *v);

/* Rows [row0, row0 + len) of a user tensor (any strides). */
attn_tensor ring_rows(const attn_tensor *t, int64_t row0, int64_t len);

/* Copies t (any strides, f32|bf16|f16) into contiguous [b, n, h, c] at dst,
 * same dtype. */
void ring_pack(const attn_tensor *t, void *dst);

/* Writes contiguous f32 src [b, len, h, c] into rows [row0, row0 + len) of
 * dst (any strides, f32|bf16|f16), rounding to its dtype. */
void ring_store(const float *src, const attn_tensor *dst, int64_t row0,
                int64_t len);

/* Element (b, i, h, c) of t as f32. */
float ring_load(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                int64_t c);

/* Seconds (MPI_Wtime). */
double ring_now(void);

#endif /* ATTN_RING_INTERNAL_H */
