/*
 * Mask oracle: the one element predicate every reference reads. Query i
 * (local to sequence g) may see key j (local) when all of these hold, read
 * through the positions of oracle_pos.h:
 *
 *   j < seq_k, i < seq_q   the sequence's ends (cu_seqlens) and kv_lens
 *   causal bottom-right    kpos <= qpos
 *   causal top-left        kpos <= qpos - (seq_k - seq_q)
 *   window (L, R)          diag - L <= kpos <= diag + R, diag being the
 *                          causal alignment's qpos (bottom-right without
 *                          causal); -1 leaves a side open
 *   prefix-LM N >= 0       kpos < N or kpos <= qpos
 *   mask tensor            mask[b, h, i, j] != 0 (broadcast axes)
 *   (0.5, attn/sparse.h) global tokens OR-ed with the window, Child et
 *   al.'s strided/fixed pattern, block_mask[b, h, i / bq, j / bk], and
 *   mask_mod(b, h, i, j) (called as is)
 */
#ifndef ATTN_TEST_ORACLE_MASK_H
#define ATTN_TEST_ORACLE_MASK_H

#include "oracle_pos.h"

int oracle_allowed(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                   int64_t i, int64_t j);

#endif /* ATTN_TEST_ORACLE_MASK_H */
