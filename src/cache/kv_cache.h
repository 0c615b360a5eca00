/* KV caches inside the library (attn.h, "KV caches and decoding"): the
 * checks of a cache description, shared by append and attend. */
#ifndef ATTN_CACHE_KV_CACHE_H
#define ATTN_CACHE_KV_CACHE_H

#include "core/internal.h"

/* Copies the caller's struct of `size` bytes over defaults into *out;
 * ATTN_ERR_NULL_POINTER for c NULL, ATTN_ERR_ABI for an unknown size. */
attn_status attn_kv_cache_import(const attn_kv_cache *c, size_t size,
                                 attn_kv_cache *out);

/* Tokens a sequence can hold: capacity, or blocks_per_seq * page_size. */
int64_t attn_kv_cache_capacity(const attn_kv_cache *c);

/* Checks c (dtype, sizes, pointers, seq_lens in 0 .. capacity, the pages
 * of every stored token inside the pool); the reason goes through
 * attn_fail(p, ...) (p may be NULL: status only). */
attn_status attn_kv_cache_check(const attn_kv_cache *c, const attn_params *p);

#endif
