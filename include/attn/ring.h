/*
 * libattn_ring - ring attention over MPI (context parallelism): one long
 * sequence whose queries, keys and values are split across the ranks of an
 * MPI communicator, attended exactly as one attn_forward / attn_backward on
 * the whole sequence would.
 *
 *   attn_ring_opts ro;
 *   attn_ring_opts_init(&ro);
 *   ro.layout = ATTN_RING_ZIGZAG;             // balanced causal
 *   attn_params p;                            // this rank's slice
 *   attn_params_init(&p);
 *   p.q = ...; p.k = ...; p.v = ...; p.o = ...; p.lse = ...;
 *   p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;      // options of the whole call
 *   attn_ring_forward(NULL, MPI_COMM_WORLD, &ro, &p);
 *
 * Link with -lattn_ring -lattn and MPI (pkg-config attn-ring). libattn
 * itself never links MPI.
 *
 * Layouts (S tokens of the whole sequence; R ranks):
 *   CONTIGUOUS  rank r holds tokens [start_r, start_r + n_r), the slices in
 *               rank order, of any lengths n_r >= 0 (gathered from the
 *               ranks, not assumed equal); S = sum n_r.
 *   ZIGZAG      the sequence cut into 2R chunks as equal as possible (the
 *               first S mod 2R chunks one token longer); rank r holds
 *               chunks r and 2R-1-r, concatenated. With a causal mask every
 *               rank then does about the same work.
 * attn_ring_partition tells which global token ranges a rank holds.
 *
 * Each rank's attn_params describes its slice: q, k, v, o (and for the
 * backward dout, dq, dk, dv) are [batch, n_r, heads, dim] views of the
 * rank's tokens (q and k slices are the same tokens: self-attention), lse is
 * [batch, heads_q, n_r] contiguous. Every other field is an option of the
 * whole call and must be the same on every rank: causal (either
 * alignment), window, prefix_len, scale, softcap, alibi_slopes, rel_bias
 * (T5), sinks, kv_lens (key counts of the whole sequence), q/k_pos_offset(s)
 * (added to the global positions), num_threads, isa. Packed
 * variable-length batches: cu_seqlens_q == cu_seqlens_k over the whole
 * packed sequence (q, k, v batch 1), the same arrays on every rank;
 * documents of any lengths may cross slice boundaries. Not supported
 * (ATTN_ERR_INVALID_ARGUMENT): bias and mask tensors, compiled_mask,
 * dropout, quantised K/V, dbias; top-left causal together with kv_lens
 * below the sequence length and ALiBi or T5 (its mask and its distances
 * would need two different query positions). p->workspace is ignored: the
 * ring allocates its buffers (about 6 slices' worth, see RING in
 * docs/decisions.md) before any ring traffic.
 *
 * Errors: every rank returns the same status. The checks of every rank are
 * gathered (MPI_Allgather) before any ring traffic; a rank with bad input
 * or options that differ from rank 0's makes every rank return that status,
 * with the message "rank R: reason" in each rank's p->error_message. MPI
 * errors are not caught (MPI's error handler applies).
 *
 * Numerics: each (query slice, key slice) pair is one attn_forward call with
 * global positions (q_pos_offsets / k_pos_offsets); its partial O and LSE
 * are kept in f32 whatever the dtypes and merged by LSE (attn_merge). The
 * backward calls attn_backward per pair with the merged O and LSE, so P =
 * exp(S - lse) and D = rowsum(dO * O) are exact; dK and dV accumulate in
 * f32 while they travel round the ring back to their owner.
 */
#ifndef ATTN_RING_H
#define ATTN_RING_H

#include "attn.h"

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum attn_ring_layout {
  ATTN_RING_CONTIGUOUS = 0,
  ATTN_RING_ZIGZAG = 1
} attn_ring_layout;

/* Optional measurements of one call on this rank. */
typedef struct attn_ring_stats {
  double seconds;          /* the whole call                              */
  double compute_seconds;  /* in attn_forward/backward and merges          */
  double wait_seconds;     /* blocked in MPI_Wait* after computing: the
                              communication not hidden behind compute     */
  double bytes_sent;       /* K/V slices and dK/dV accumulators sent      */
  int64_t pairs_computed;  /* (query chunk, key chunk) calls made          */
  int64_t pairs_skipped;   /* pairs fully masked, not computed             */
  int64_t slices_received; /* K/V slices received (window: fewer)          */
  size_t buffer_bytes;     /* memory the ring allocated on this rank        */
} attn_ring_stats;

typedef struct attn_ring_opts {
  attn_ring_layout layout; /* default CONTIGUOUS                         */
  attn_ring_stats *stats;  /* optional out                               */
} attn_ring_opts;

ATTN_API void attn_ring_opts_init(attn_ring_opts *o);

/* The global token ranges rank (of ranks) holds in a sequence of seq_len
 * tokens: *n_ranges (1 for CONTIGUOUS, 2 for ZIGZAG) ranges [start[i],
 * start[i] + len[i]), in the order the rank stores them. CONTIGUOUS gives
 * the balanced split (the first seq_len mod ranks ranks one token more);
 * any other contiguous split is allowed too. */
ATTN_API attn_status attn_ring_partition(attn_ring_layout layout,
                                         int64_t seq_len, int ranks, int rank,
                                         int64_t start[2], int64_t len[2],
                                         int *n_ranges);

/* O and LSE of this rank's queries against the whole sequence. Collective
 * over comm. */
ATTN_API attn_status attn_ring_forward_sized(attn_context *ctx, MPI_Comm comm,
                                             const attn_ring_opts *opts,
                                             const attn_params *local,
                                             size_t params_size);
/* dQ of this rank's queries and dK, dV of its keys and values, from the
 * forward's O and LSE (required) and dO (and dsinks, drel_bias, summed over
 * the whole sequence, the same on every rank). Collective over comm. */
ATTN_API attn_status attn_ring_backward_sized(attn_context *ctx, MPI_Comm comm,
                                              const attn_ring_opts *opts,
                                              const attn_params *local,
                                              size_t params_size);

static inline attn_status attn_ring_forward(attn_context *ctx, MPI_Comm comm,
                                            const attn_ring_opts *opts,
                                            const attn_params *local) {
  return attn_ring_forward_sized(ctx, comm, opts, local, sizeof *local);
}
static inline attn_status attn_ring_backward(attn_context *ctx, MPI_Comm comm,
                                             const attn_ring_opts *opts,
                                             const attn_params *local) {
  return attn_ring_backward_sized(ctx, comm, opts, local, sizeof *local);
}

#ifdef __cplusplus
}
#endif

#endif /* ATTN_RING_H */
