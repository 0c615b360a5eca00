/*
 * attn/sparse.h - sparse attention patterns and user score/mask functions
 * (0.5): what the attn_params fields appended in 0.5 mean, and how they
 * become tiles. Included by attn.h; may also be included on its own.
 */
#ifndef ATTN_SPARSE_H
#define ATTN_SPARSE_H

#include "../attn.h"

/* ------------------------------------------------------------------------ */
/* Sparse patterns                                                          */
/* ------------------------------------------------------------------------ */
/*
 * Positions are attn_params' (attn.h, "positions"): query row i of a
 * sequence sits at qpos(i) = i + seq_k - seq_q (+ offsets) and key j at
 * kpos(j) = j (+ offsets); seq_k is the sequence's effective key count
 * (kv_lens applied). With every offset 0 and seq_q = seq_k, qpos(i) = i.
 *
 * An element (i, j) may attend when every mask allows it:
 *
 *   causal, prefix, kv_lens, the ends of packed sequences     (as before)
 *   and (window(i, j) or qpos(i) in G or kpos(j) in G)       Longformer
 *   and child(qpos(i), kpos(j))                     Child et al., if set
 *   and block_mask[i / block_q][j / block_k]           block-sparse
 *   and mask[b, h, i, j]                             the mask tensor
 *   and mask_mod(b, h, i, j, mod_user) != 0               user function
 *
 * G = global_idx[0 .. global_count): the global tokens (Beltagy et al.
 * 2020). Without a window every pair is already allowed and G changes
 * nothing. The entries must be strictly increasing and >= 0; with no
 * position offsets (q_pos_offset, k_pos_offset and the per-sequence ones
 * all 0) each must also be below the longest sequence's key count. In a
 * packed batch the same G applies to every sequence (positions inside the
 * sequence), entries past a sequence's end are simply absent from it.
 *
 * child(p, j) with L = sparse_l, C = sparse_c (Child et al. 2019; causal by
 * construction, so also without attn_params.causal):
 *   ATTN_SPARSE_STRIDED   j <= p and (p - L <= j or (p - j) mod L = 0)
 *   ATTN_SPARSE_FIXED     j <= p and (floor(j / L) = floor(p / L)
 *                                     or j mod L >= L - C)
 * (floor and mod towards minus infinity, for negative positions too.)
 *
 * block_mask: bool, shape [batch|1, heads_q|1, ceil(seq_q / block_q),
 * ceil(seq_k / block_k)] with seq_q and seq_k those of q and k (with packed
 * batches: batch = the number of sequences, and the longest sequence's
 * lengths; i and j are then indices inside each sequence). Any block sizes
 * >= 1: they need not match the kernels' tiles (ATTN_TILE_Q x ATTN_TILE_K).
 * An axis of size 1 broadcasts.
 *
 * A query row left with no key gets o = 0 and lse = -inf (lse = sinks[h]
 * with a sink), as with every other mask.
 *
 * Tiles. Like every mask these are compiled to the runs of non-empty key
 * tiles of each (sequence, query tile) (attn.h, "Compiled masks"), each
 * FULL or PARTIAL; EMPTY tiles cost nothing. Each tile is classified
 * exactly per row for causal/window/global/Child (conservatively only
 * where two patterns are both partial on one row: PARTIAL then), from the
 * block entries it overlaps, from the mask tensor's bytes, and for
 * mask_mod as below. attn_mask_tile_counts reports the result.
 *
 * ------------------------------------------------------------------------
 * User functions
 * ------------------------------------------------------------------------
 * score_mod (FlexAttention's score_mod): the last score modifier, after
 * softcap, ALiBi, T5 and bias, before the masks:
 *     s = score_mod(s, b, h, i, j, mod_user)
 * It runs on every element of every non-EMPTY tile (keys below kv_lens):
 * a call with score_mod takes no fused fast path. A result of -inf masks
 * the element. The backward needs score_mod_grad(s, ...) = d score_mod /
 * d s at the same s (ATTN_ERR_INVALID_ARGUMENT without it); it is used
 * only where score_mod's result is not -inf, and dbias and drel_bias are
 * gradients through it.
 *
 * mask_mod (FlexAttention's mask_mod): nonzero = (b, h, i, j) may attend.
 * The kernels call it only on PARTIAL tiles, for the elements every other
 * mask allows. Whether a tile is EMPTY, FULL or PARTIAL for mask_mod is
 * proven, whenever tile lists are made (by every call, or once by
 * attn_mask_compile), by
 *   1. mask_tile(b, h, i0, i1, j0, j1, mod_user) when given: its answer
 *      (ATTN_MOD_TILE_EMPTY, _FULL or _PARTIAL) is trusted for the block
 *      of rows i0..i1-1 and keys j0..j1-1; a wrong EMPTY or FULL gives
 *      wrong results. Any other value counts as PARTIAL;
 *   2. else exhaustive probing: mask_mod on every element of every tile
 *      that the other masks leave non-empty (all ATTN_TILE_Q x ATTN_TILE_K
 *      of them). That costs one call per element, so compile a mask that
 *      many calls share with attn_mask_compile (FlexAttention's
 *      create_block_mask), or give mask_tile.
 * With mod_by_head = 0 (default) the tile lists are shared by the heads
 * and probing and mask_tile see h = 0; set it when mask_mod depends on h.
 *
 * A compiled mask (attn_mask_compile) records the pattern it was made
 * with: global_idx's values, sparse_kind, sparse_l, sparse_c, block_mask
 * (its data pointer, shape and strides, block_q, block_k), mask_mod,
 * mask_tile, mod_by_head and mod_user; a call with other values is
 * ATTN_ERR_INVALID_ARGUMENT. Like the mask tensor, block_mask must stay
 * alive and unchanged while the compiled mask is used. score_mod is not
 * part of the mask and may differ.
 *
 * Not with the decode path (attn_forward then uses the tiled kernel), nor
 * with ring attention (attn/ring.h) or the KV cache's attend: both refuse
 * these fields with ATTN_ERR_INVALID_ARGUMENT and a reason.
 */

#endif /* ATTN_SPARSE_H */
