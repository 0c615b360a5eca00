/*
 * attn/kv_cache.h - KV caches and decoding (0.3): contiguous and paged caches,
 * append, attend, the decode kernel and the bandwidth probe.
 * Included by attn.h; may also be included on its own.
 */
#ifndef ATTN_KV_CACHE_H
#define ATTN_KV_CACHE_H

#include "../attn.h"
#include "positions.h" /* attn_rope */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* KV caches and decoding (0.3)                                             */
/* ------------------------------------------------------------------------ */
/*
 * A KV cache is caller memory described by attn_kv_cache (like
 * FlashAttention's flash_attn_with_kvcache and vLLM's paged attention: the
 * engine owns the blocks, libattn reads and appends):
 *
 *   contiguous (page_size == 0):
 *     k [num_seqs, capacity, heads_kv, head_dim]     v [..., head_dim_v]
 *   paged (page_size > 0):
 *     k [num_pages, page_size, heads_kv, head_dim]   v [..., head_dim_v]
 *     block_table [num_seqs, blocks_per_seq]: token t of sequence s is at
 *     page block_table[s * blocks_per_seq + t / page_size], row
 *     t % page_size; capacity = blocks_per_seq * page_size.
 *
 * seq_lens[s] tokens of sequence s are stored; token t sits at position t
 * (for RoPE always; masks and ALiBi/T5 add p's position offsets, as in
 * attn_forward). Storage is f32, bf16, f16, or (0.4) q8_0 or q4_0: rows
 * of head_dim / 32 blocks (head_dim and head_dim_v multiples of 32), each
 * row quantised by append after RoPE, read in place by attend. Paged and
 * contiguous caches
 * holding the same tokens give bitwise the same results, equal to
 * attn_forward on the same keys when that takes the decode path. Pages
 * may be shared between sequences for reading (a common prefix); append
 * refuses to write into a page another stored block uses.
 */
typedef struct attn_kv_cache {
  attn_dtype dtype;   /* storage of k and v                           */
  int64_t num_seqs;   /* sequences                                    */
  int64_t heads_kv;   /* kv heads                                     */
  int64_t head_dim;   /* of k                                         */
  int64_t head_dim_v; /* of v (0 = head_dim)                          */
  int64_t capacity;   /* contiguous: tokens per sequence              */
  void *k;            /* see above; rows are dense                    */
  void *v;
  int32_t *seq_lens;          /* [num_seqs] tokens stored; append advances it */
  int64_t page_size;          /* 0 = contiguous                               */
  int64_t num_pages;          /* paged: pages in k and v                      */
  int64_t blocks_per_seq;     /* paged: columns of block_table        */
  const int32_t *block_table; /* paged: [num_seqs, blocks_per_seq]    */
  char *error_message;        /* optional: a failing append writes a
                                 NUL-terminated reason here (attend
                                 writes to its p->error_message)   */
  size_t error_message_size;
} attn_kv_cache;

ATTN_API void attn_kv_cache_init_sized(attn_kv_cache *c, size_t size);

/* Appends n_new[s] tokens (n_new NULL: k_new's seq for every sequence) of
 * k_new [num_seqs, seq_new, heads_kv, head_dim] and v_new to each
 * sequence at seq_lens[s], rotating the keys by rope (NULL = none) at
 * their positions on the way in, then advances seq_lens. A sequence
 * without room (a full cache), a page index outside the pool or a page
 * used twice is an error and nothing is written. */
ATTN_API attn_status attn_kv_cache_append_sized(
    attn_context *ctx, const attn_kv_cache *c, size_t cache_size,
    attn_tensor k_new, attn_tensor v_new, const int32_t *n_new,
    const attn_rope *rope, size_t rope_size);

/* Attention of p->q [num_seqs, seq_q, heads_q, head_dim] against the
 * cache into p->o (and p->lse): p's k, v and kv_lens must be unset (the
 * cache supplies them, with kv_lens = seq_lens); every other option of p
 * applies, positions included (query i of sequence s at
 * seq_lens[s] - seq_q + i). rope (NULL = none) rotates the queries at
 * those positions first (the keys were rotated by append). Any seq_q, in
 * passes of up to ATTN_DECODE_MAX_ROWS rows of the decode kernel; with a
 * mask or bias tensor, attn_forward's tiled kernel on the cache (a paged
 * one gathered into the workspace first). */
ATTN_API attn_status attn_kv_cache_attend_sized(
    attn_context *ctx, const attn_kv_cache *c, size_t cache_size,
    const attn_params *p, size_t params_size, const attn_rope *rope,
    size_t rope_size);

/* Bytes of workspace attn_kv_cache_attend needs for this call (its shapes,
 * options, rope and the cache's lengths now); pass that much in
 * p->workspace and the call allocates nothing. */
ATTN_API attn_status attn_kv_cache_attend_workspace_size_sized(
    attn_context *ctx, const attn_kv_cache *c, size_t cache_size,
    const attn_params *p, size_t params_size, const attn_rope *rope,
    size_t rope_size, size_t *bytes);

/* The decode kernel: for a few query rows against many keys, every query
 * head of a kv head is served by one pass over its keys; keys are split in
 * chunks of ATTN_DECODE_CHUNK (never depending on the thread count) whose
 * partial results merge by LSE in a fixed order. attn_forward takes this
 * path by itself when seq_q <= ATTN_DECODE_MAX_ROWS and p has no mask
 * tensor, bias tensor or packed sequences (cu_seqlens). */
#define ATTN_DECODE_CHUNK 512
#define ATTN_DECODE_MAX_ROWS ATTN_TILE_Q

/* Measures this machine's memory read bandwidth (GB/s, 1e9 bytes) on
 * num_threads threads (0 = all) for about seconds, streaming a buffer far
 * larger than the caches. */
ATTN_API attn_status attn_read_bandwidth_gbps(int num_threads, double seconds,
                                              double *gbps);

/* The header-inline wrappers (see "ABI"). The library itself exports the
 * unsuffixed names too, as the 0.1 entry points. */

/* The header-inline wrappers (attn.h, "ABI"). */
#if !defined(ATTN_BUILDING_LIBRARY)
static inline void attn_kv_cache_init(attn_kv_cache *c) {
  attn_kv_cache_init_sized(c, sizeof *c);
}
static inline attn_status
attn_kv_cache_append(attn_context *ctx, const attn_kv_cache *c,
                     attn_tensor k_new, attn_tensor v_new, const int32_t *n_new,
                     const attn_rope *rope) {
  return attn_kv_cache_append_sized(ctx, c, sizeof *c, k_new, v_new, n_new,
                                    rope, sizeof(attn_rope));
}
static inline attn_status
attn_kv_cache_attend_workspace_size(attn_context *ctx, const attn_kv_cache *c,
                                    const attn_params *p, const attn_rope *rope,
                                    size_t *bytes) {
  return attn_kv_cache_attend_workspace_size_sized(
      ctx, c, sizeof *c, p, sizeof *p, rope, sizeof(attn_rope), bytes);
}
static inline attn_status attn_kv_cache_attend(attn_context *ctx,
                                               const attn_kv_cache *c,
                                               const attn_params *p,
                                               const attn_rope *rope) {
  return attn_kv_cache_attend_sized(ctx, c, sizeof *c, p, sizeof *p, rope,
                                    sizeof(attn_rope));
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* ATTN_KV_CACHE_H */
