/*
 * attnmap.h - attention probabilities of a model run, recomputed from its
 * trace (trace.h) without ever holding a seq x seq matrix.
 *
 *   exact rows   p[h][i][j] = exp(scale * q[i][h] . k[j][g] - lse[h][i]),
 *                g = h / (heads_q / heads_kv) (GQA), 0 where causal hides
 *                j > i: one row of seq floats at a time, from the saved LSE.
 *   pooled maps  the probabilities summed over blocks of `block` keys and
 *                averaged over blocks of `block` queries:
 *                  m[h][a][b] = 1/|A| sum_{i in A} sum_{j in B} p[h][i][j]
 *                so every row of a pooled map sums to 1 like an exact row
 *                (block = 1 is the exact map). Computed by attn_forward on
 *                the trace's Q and K with one-hot values (v[j] = e_{j/block}),
 *                whose output row is exactly the row's mass per key block:
 *                O(seq * blocks) memory, the library's kernels and threads.
 *
 * What `attn show` draws (the view below): up to ATTNMAP_EXACT_MAX tokens,
 * the exact map of every layer and head; longer inputs are pooled into at
 * most ATTNMAP_BLOCKS_MAX blocks a side, plus, for one layer (the chosen
 * one), the exact rows of at most ATTNMAP_ZOOM_ROWS queries around the
 * chosen token (the zoom).
 */
#ifndef ATTN_MODEL_ATTNMAP_H
#define ATTN_MODEL_ATTNMAP_H

#include "trace.h"

#include <stddef.h>
#include <stdint.h>

#define ATTNMAP_EXACT_MAX 128  /* tokens drawn exactly, every layer/head  */
#define ATTNMAP_BLOCKS_MAX 128 /* blocks a side of a pooled map            */
#define ATTNMAP_ZOOM_ROWS 32   /* exact query rows kept for a long input   */

/* Keys of a trace layer: seq_k, or seq when seq_k is unset (0). */
int64_t attnmap_keys(const model_trace_layer *y);

/* Row i of head h: p (seq_k floats) = the probabilities of query i over
 * every key, 0 for keys the causal mask hides (bottom-right aligned).
 * Cross-attention (seq_k != seq) is drawn like self-attention, with
 * query blocks as rows and key blocks as columns. Dot products in double. A row
 * the trace gives LSE -inf (no key) is all 0. Returns 0, or -1 for a bad
 * argument (h or i out of range, NULL). */
int attnmap_row(const model_trace_layer *y, int64_t h, int64_t i, float *p);

/* Blocks a side for seq tokens in blocks of block: ceil(seq / block). */
int64_t attnmap_blocks(int64_t seq, int64_t block);

/* The pooled maps of every head of layer y (see above), into out
 * (heads_q, nb, nbk) with nb = attnmap_blocks(seq, block) and nbk =
 * attnmap_blocks(seq_k, block), both <= 256.
 * threads: 0 = the library's default. Returns 0, or -1 with a reason. */
int attnmap_pooled(const model_trace_layer *y, int64_t block, int threads,
                   float *out, char *err, size_t err_size);

/* Everything `attn show` draws, for every layer. */
typedef struct attnmap_view {
  int64_t n_layers, heads_q, heads_kv, seq;
  int64_t seq_k;      /* keys (== seq for self-attention)                    */
  int causal;         /* bottom-right: query i sees keys j <= i + seq_k - seq */
  int64_t block;      /* tokens per block; 1 = exact maps                */
  int64_t n_blocks;   /* query blocks: ceil(seq / block)                 */
  int64_t n_blocks_k; /* key blocks: ceil(seq_k / block)                 */
  float *maps;        /* (n_layers, heads_q, n_blocks, n_blocks_k)       */
  /* exact rows of one layer around one token (only when block > 1) */
  int64_t zoom_layer; /* -1 when there is no zoom                       */
  int64_t zoom_row0;  /* first query row                                 */
  int64_t zoom_rows;  /* <= ATTNMAP_ZOOM_ROWS                            */
  float *zoom;        /* (heads_q, zoom_rows, seq_k)                     */
} attnmap_view;

/* Builds the view of trace t: exact maps when seq and seq_k are at most
 * ATTNMAP_EXACT_MAX,
 * else pooled maps plus the zoom rows (layer zoom_layer, the queries of
 * token zoom_token's block, at most ATTNMAP_ZOOM_ROWS centred on it).
 * progress (may be NULL) is called after each layer with (done, total).
 * Returns 0, or -1 with a reason (v is then empty and safe to free). */
int attnmap_view_build(attnmap_view *v, const model_trace *t,
                       int64_t zoom_layer, int64_t zoom_token, int threads,
                       void (*progress)(int64_t done, int64_t total), char *err,
                       size_t err_size);
void attnmap_view_free(attnmap_view *v);

/* The map of (layer, head): n_blocks x n_blocks_k floats. */
const float *attnmap_view_map(const attnmap_view *v, int64_t layer,
                              int64_t head);
/* 1 when every key of key block b is hidden from every query of query
 * block a by the causal mask. */
int attnmap_view_hidden(const attnmap_view *v, int64_t a, int64_t b);

#endif
