/*
 * Positions oracle: where sequence b lies in the tensors, and where each of
 * its queries and keys sits, exactly as attn.h's comment on the positions
 * fields says:
 *
 *   qpos(i) = i + seq_k - seq_q + q_pos_offset (+ q_pos_offsets[b])
 *   kpos(j) = j + k_pos_offset (+ k_pos_offsets[b])
 *
 * seq_q and seq_k being the sequence's (seq_k with kv_lens applied). The
 * causal alignment moves the diagonal, not the positions: top-left causal
 * and its window use qpos - (seq_k - seq_q). ALiBi reads |qpos - kpos|.
 */
#ifndef ATTN_TEST_ORACLE_POS_H
#define ATTN_TEST_ORACLE_POS_H

#include "oracle_base.h"

/* Where sequence b lies in the tensors (packed batches, kv_lens applied). */
typedef struct oracle_seq_geom {
  int64_t b;      /* sequence: index into kv_lens, offsets, bias/mask batch */
  int64_t tb;     /* batch index into q/k/v/o (0 with cu_seqlens)        */
  int64_t q0, k0; /* first row on the seq axis of q/o and of k/v         */
  int64_t sq, sk; /* query rows; keys visible (kv_lens applied)          */
} oracle_seq_geom;

/* Number of sequences: varlen_batch with cu_seqlens, else the batch. */
int64_t oracle_num_seqs(const attn_params *p);
void oracle_seq_geom_get(const attn_params *p, int64_t b, oracle_seq_geom *g);
/* Longest key count over the sequences (kv_lens applied), at least 1. */
int64_t oracle_max_keys(const attn_params *p);

/* Position of query i and key j (local indices) of sequence g. */
int64_t oracle_qpos(const attn_params *p, const oracle_seq_geom *g, int64_t i);
int64_t oracle_kpos(const attn_params *p, const oracle_seq_geom *g, int64_t j);
/* The diagonal of the causal alignment in use for query i: qpos, minus
 * seq_k - seq_q for top-left (causal and window read it). */
int64_t oracle_diag_pos(const attn_params *p, const oracle_seq_geom *g,
                        int64_t i);
/* ALiBi distance |qpos(i) - kpos(j)|. */
double oracle_alibi_dist(const attn_params *p, const oracle_seq_geom *g,
                         int64_t i, int64_t j);

/* T5's bucket of rel = kpos - qpos, the Hugging Face reference
 * (T5Attention._relative_position_bucket) line by line, its float32
 * tensor arithmetic in float; the cases where the reference is undefined
 * (exact range 0, NaN or out-of-range results) as attn.h's attn_t5_bucket
 * documents them (src/pos/t5.c). */
int64_t oracle_t5_bucket(int64_t rel, int64_t buckets, int64_t max_distance,
                         int bidirectional);
/* The T5 bias of query i, key j, head h: rel_bias[bucket][h]. */
double oracle_t5_bias(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                      int64_t i, int64_t j);
/* Index of that table element (for the gradient). */
int64_t oracle_t5_index(const attn_params *p, const oracle_seq_geom *g,
                        int64_t h, int64_t i, int64_t j);

#endif /* ATTN_TEST_ORACLE_POS_H */
