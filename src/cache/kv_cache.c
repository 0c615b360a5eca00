/* KV caches (attn.h, "KV caches and decoding"): contiguous and paged
 * storage described by attn_kv_cache, append with RoPE fused, attend
 * through the split-KV decode kernel (src/kernels/decode.c).
 *
 * Decisions:
 *  - The cache is caller memory (FlashAttention's flash_attn_with_kvcache,
 *    vLLM's block tables): libattn checks, reads and appends, never
 *    allocates or frees it. A token's row is found through the block table
 *    each time; nothing is cached between calls.
 *  - Append is all or nothing: every check (sizes, room in every
 *    sequence, every page index, no page written twice or written while
 *    another stored block uses it) runs before the first byte is written.
 *    Status codes: ATTN_ERR_INVALID_SEQLENS for seq_lens outside 0 ..
 *    capacity or a sequence without room (a full cache), and for n_new
 *    outside 0 .. seq_new; ATTN_ERR_INVALID_ARGUMENT for a page outside
 *    the pool or used twice; ATTN_ERR_INVALID_SHAPE / HEAD_DIM /
 *    HEAD_RATIO / INVALID_DTYPE for mismatched tensors. Attend allows
 *    pages shared between sequences (prefix sharing); append refuses to
 *    write into a page that any other stored or written block uses.
 *  - Keys are rotated once, on the way in: k_new is read in f32, rotated
 *    at position seq_lens[s] + j (angles in double, rope.c), then rounded
 *    to the cache dtype. Attend rotates the queries into f32 workspace at
 *    seq_lens[s] - seq_q + i. RoPE positions ignore p's position offsets
 *    (those move masks and ALiBi, which the rotation does not see).
 *  - Attend runs the decode kernel for every seq_q and every option it
 *    computes itself; paged and contiguous caches read the same keys in
 *    the same chunks, so their results are bitwise equal, and equal to
 *    attn_forward on the same keys when that takes the decode path. With a
 *    mask tensor or a bias tensor it calls attn_forward (the tiled
 *    kernel), a paged cache first gathered into workspace.
 *  - Workspace: p->workspace if given (too small: ATTN_ERR_WORKSPACE_TOO_
 *    SMALL with the size needed in the message), else one allocation. */
#include "cache/kv_cache.h"

#include "kernels/decode.h"
#include "mask/mask.h"
#include "pos/rope.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static void cache_defaults(attn_kv_cache *c) {
  memset(c, 0, sizeof *c);
  c->dtype = ATTN_DTYPE_F32;
}

void attn_kv_cache_init_sized(attn_kv_cache *c, size_t size) {
  if (!c || size != sizeof(attn_kv_cache))
    return; /* nothing is written into memory of unknown size */
  cache_defaults(c);
}

attn_status attn_kv_cache_import(const attn_kv_cache *c, size_t size,
                                 attn_kv_cache *out) {
  if (!c)
    return ATTN_ERR_NULL_POINTER;
  if (size != sizeof(attn_kv_cache))
    return ATTN_ERR_ABI;
  cache_defaults(out);
  memcpy(out, c, size);
  if (out->head_dim_v == 0)
    out->head_dim_v = out->head_dim;
  return ATTN_OK;
}

int64_t attn_kv_cache_capacity(const attn_kv_cache *c) {
  return c->page_size > 0 ? c->blocks_per_seq * c->page_size : c->capacity;
}

static int storage_dtype(attn_dtype d) {
  return d == ATTN_DTYPE_F32 || d == ATTN_DTYPE_BF16 || d == ATTN_DTYPE_F16;
}

/* Bytes of one cached row of dim values (a quantised row: dim / 32
 * blocks). */
static size_t cache_row_bytes(const attn_kv_cache *c, int64_t dim) {
  return (size_t)attn_row_bytes(c->dtype, 1, dim);
}

#define FAIL(st, ...) return attn_fail(p, st, __VA_ARGS__)

/* Sizes and pointers. */
static attn_status check_layout(const attn_kv_cache *c, const attn_params *p) {
  if (!storage_dtype(c->dtype) && !attn_dtype_is_quant(c->dtype))
    FAIL(ATTN_ERR_INVALID_DTYPE,
         "cache dtype %d must be f32, bf16, f16, q8_0 or q4_0", (int)c->dtype);
  if (c->num_seqs < 1 || c->heads_kv < 1)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "cache num_seqs (%lld) and heads_kv (%lld) must be >= 1",
         (long long)c->num_seqs, (long long)c->heads_kv);
  if (c->head_dim < 1 || c->head_dim > ATTN_MAX_HEAD_DIM || c->head_dim_v < 1 ||
      c->head_dim_v > ATTN_MAX_HEAD_DIM)
    FAIL(ATTN_ERR_HEAD_DIM, "cache head_dim (%lld, v %lld) must be in 1..%d",
         (long long)c->head_dim, (long long)c->head_dim_v, ATTN_MAX_HEAD_DIM);
  if (attn_dtype_is_quant(c->dtype) &&
      (c->head_dim % ATTN_QBLOCK != 0 || c->head_dim_v % ATTN_QBLOCK != 0))
    FAIL(ATTN_ERR_HEAD_DIM,
         "cache dtype %s: head_dim (%lld, v %lld) must be a multiple of %d",
         c->dtype == ATTN_DTYPE_Q8_0 ? "q8_0" : "q4_0", (long long)c->head_dim,
         (long long)c->head_dim_v, ATTN_QBLOCK);
  if (!c->k || !c->v || !c->seq_lens)
    FAIL(ATTN_ERR_NULL_POINTER, "cache k, v and seq_lens must be set");
  if (c->page_size < 0)
    FAIL(ATTN_ERR_INVALID_SHAPE, "cache page_size (%lld) must be >= 0",
         (long long)c->page_size);
  int64_t rows, n;
  if (c->page_size == 0) {
    if (c->capacity < 0)
      FAIL(ATTN_ERR_INVALID_SHAPE, "cache capacity (%lld) must be >= 0",
           (long long)c->capacity);
    if (__builtin_mul_overflow(c->num_seqs, c->capacity, &rows))
      FAIL(ATTN_ERR_OVERFLOW, "cache size overflows");
  } else {
    if (c->num_pages < 1 || c->blocks_per_seq < 1)
      FAIL(ATTN_ERR_INVALID_SHAPE,
           "paged cache num_pages (%lld) and blocks_per_seq (%lld) must be "
           ">= 1",
           (long long)c->num_pages, (long long)c->blocks_per_seq);
    if (!c->block_table)
      FAIL(ATTN_ERR_NULL_POINTER, "paged cache block_table must be set");
    if (__builtin_mul_overflow(c->num_pages, c->page_size, &rows) ||
        __builtin_mul_overflow(c->blocks_per_seq, c->page_size, &n) ||
        __builtin_mul_overflow(c->num_seqs, c->blocks_per_seq, &n))
      FAIL(ATTN_ERR_OVERFLOW, "cache size overflows");
  }
  const int64_t dmax = ATTN_MAX(c->head_dim, c->head_dim_v);
  if (__builtin_mul_overflow(rows, c->heads_kv * dmax * 4, &n) ||
      n > INT64_MAX / 2)
    FAIL(ATTN_ERR_OVERFLOW, "cache size overflows");
  return ATTN_OK;
}

/* seq_lens[s] + extra[s] (extra may be NULL) in 0 .. capacity, and the
 * pages of tokens 0 .. that - 1 inside the pool. */
static attn_status check_lens(const attn_kv_cache *c, const int32_t *extra,
                              const attn_params *p) {
  const int64_t cap = attn_kv_cache_capacity(c);
  for (int64_t s = 0; s < c->num_seqs; s++) {
    const int64_t len = c->seq_lens[s], add = extra ? extra[s] : 0;
    if (len < 0 || len > cap)
      FAIL(ATTN_ERR_INVALID_SEQLENS,
           "cache seq_lens[%lld] = %lld must be in 0..%lld (the capacity)",
           (long long)s, (long long)len, (long long)cap);
    if (len + add > cap)
      FAIL(ATTN_ERR_INVALID_SEQLENS,
           "cache sequence %lld is full: %lld tokens + %lld new > capacity "
           "%lld",
           (long long)s, (long long)len, (long long)add, (long long)cap);
    if (c->page_size == 0)
      continue;
    const int64_t blocks = (len + add + c->page_size - 1) / c->page_size;
    for (int64_t b = 0; b < blocks; b++) {
      const int32_t pg = c->block_table[s * c->blocks_per_seq + b];
      if (pg < 0 || pg >= c->num_pages)
        FAIL(ATTN_ERR_INVALID_ARGUMENT,
             "cache block_table[%lld][%lld] = %d is outside the pool of %lld "
             "pages",
             (long long)s, (long long)b, (int)pg, (long long)c->num_pages);
    }
  }
  return ATTN_OK;
}

attn_status attn_kv_cache_check(const attn_kv_cache *c, const attn_params *p) {
  attn_status st = check_layout(c, p);
  return st != ATTN_OK ? st : check_lens(c, NULL, p);
}

/* Address of token t of sequence s, kv head g, in pool (k or v). */
static void *cache_row(const attn_kv_cache *c, void *pool, int64_t dim,
                       int64_t s, int64_t t, int64_t g) {
  int64_t row;
  if (c->page_size == 0) {
    row = s * c->capacity + t;
  } else {
    const int32_t pg = c->block_table[s * c->blocks_per_seq + t / c->page_size];
    row = (int64_t)pg * c->page_size + t % c->page_size;
  }
  return (char *)pool +
         (size_t)(row * c->heads_kv + g) * cache_row_bytes(c, dim);
}

/* ------------------------------------------------------------------------ */
/* Append                                                                   */
/* ------------------------------------------------------------------------ */

static attn_status check_new(const attn_kv_cache *c, const attn_params *p,
                             const attn_tensor *t, int64_t dim,
                             const char *name) {
  if (!storage_dtype(t->dtype))
    FAIL(ATTN_ERR_INVALID_DTYPE,
         "kv cache append: %s dtype %d must be f32, "
         "bf16 or f16",
         name, (int)t->dtype);
  for (int a = 0; a < 4; a++)
    if (t->stride[a] < 0)
      FAIL(ATTN_ERR_INVALID_STRIDE,
           "kv cache append: %s stride[%d] = %lld is negative", name, a,
           (long long)t->stride[a]);
  if (t->shape[0] != c->num_seqs || t->shape[1] < 0)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "kv cache append: %s is [%lld, %lld, ...]: it needs the cache's "
         "%lld sequences and a token count >= 0",
         name, (long long)t->shape[0], (long long)t->shape[1],
         (long long)c->num_seqs);
  if (t->shape[2] != c->heads_kv)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "kv cache append: %s has %lld heads, the cache %lld", name,
         (long long)t->shape[2], (long long)c->heads_kv);
  if (t->shape[3] != dim)
    FAIL(ATTN_ERR_HEAD_DIM,
         "kv cache append: %s head_dim %lld, the cache's "
         "is %lld",
         name, (long long)t->shape[3], (long long)dim);
  if (!t->data && t->shape[1] > 0)
    FAIL(ATTN_ERR_NULL_POINTER, "kv cache append: %s data is NULL", name);
  return ATTN_OK;
}

/* Pages written by this append must be distinct and used by no other
 * stored or written block. */
static attn_status check_pages_written(const attn_kv_cache *c,
                                       const int32_t *nn,
                                       const attn_params *p) {
  const int64_t ps = c->page_size;
  uint8_t *mark = calloc((size_t)c->num_pages, 1);
  if (!mark)
    FAIL(ATTN_ERR_OUT_OF_MEMORY,
         "kv cache append: out of memory for the page marks");
  attn_status st = ATTN_OK;
  for (int64_t s = 0; s < c->num_seqs && st == ATTN_OK; s++) {
    if (nn[s] == 0)
      continue;
    const int64_t b0 = c->seq_lens[s] / ps;
    const int64_t b1 = (c->seq_lens[s] + nn[s] - 1) / ps;
    for (int64_t b = b0; b <= b1; b++) {
      const int32_t pg = c->block_table[s * c->blocks_per_seq + b];
      if (mark[pg]) { /* written twice */
        st = attn_fail(p, ATTN_ERR_INVALID_ARGUMENT,
                       "kv cache append: page %d would be written twice "
                       "(block %lld of sequence %lld)",
                       (int)pg, (long long)b, (long long)s);
        break;
      }
      mark[pg] = 1;
    }
  }
  for (int64_t s = 0; s < c->num_seqs && st == ATTN_OK; s++) {
    const int64_t end = c->seq_lens[s] + nn[s];
    const int64_t w0 = nn[s] ? c->seq_lens[s] / ps : INT64_MAX;
    for (int64_t b = 0; b * ps < end; b++) {
      const int32_t pg = c->block_table[s * c->blocks_per_seq + b];
      if (b < w0 && mark[pg]) { /* written and used elsewhere */
        st = attn_fail(p, ATTN_ERR_INVALID_ARGUMENT,
                       "kv cache append: page %d is written but also holds "
                       "stored block %lld of sequence %lld",
                       (int)pg, (long long)b, (long long)s);
        break;
      }
    }
  }
  free(mark);
  return st;
}

/* Copies one row (dim elements) of src into the cache at dst, rotated at
 * position pos when rp is set, then rounded (or quantised) to dt. */
static void append_row(const attn_tensor *src, int64_t s, int64_t j, int64_t g,
                       int64_t dim, const attn_rope_plan *rp, const double *cs,
                       const double *sn, void *dst, attn_dtype dt) {
  float row[ATTN_MAX_HEAD_DIM];
  const size_t es = attn_dtype_size(src->dtype);
  const char *at =
      (const char *)src->data +
      (size_t)(s * src->stride[0] + j * src->stride[1] + g * src->stride[2]) *
          es;
  attn_load_row_f32(at, src->dtype, src->stride[3], dim, 1.0f, row);
  if (rp)
    attn_rope_rotate_cs(rp, cs, sn, row);
  attn_store_row(row, dim, dst, dt, 1);
}

attn_status attn_kv_cache_append_sized(attn_context *ctx,
                                       const attn_kv_cache *user,
                                       size_t cache_size, attn_tensor k_new,
                                       attn_tensor v_new, const int32_t *n_new,
                                       const attn_rope *rope,
                                       size_t rope_size) {
  (void)ctx; /* one thread: an append moves O(new tokens) bytes */
  attn_kv_cache c;
  attn_status st = attn_kv_cache_import(user, cache_size, &c);
  if (st != ATTN_OK)
    return st; /* no struct to carry a message */
  /* the reasons go to the cache's message buffer, through attn_fail */
  attn_params ep;
  memset(&ep, 0, sizeof ep);
  ep.error_message = c.error_message;
  ep.error_message_size = c.error_message_size;
  const attn_params *p = &ep;
  st = check_layout(&c, p);
  if (st == ATTN_OK)
    st = check_new(&c, p, &k_new, c.head_dim, "k_new");
  if (st == ATTN_OK)
    st = check_new(&c, p, &v_new, c.head_dim_v, "v_new");
  if (st != ATTN_OK)
    return st;
  if (k_new.shape[1] != v_new.shape[1])
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "kv cache append: k_new has %lld tokens, v_new %lld",
         (long long)k_new.shape[1], (long long)v_new.shape[1]);
  const int64_t seq_new = k_new.shape[1];
  int32_t stack_nn[64];
  int32_t *nn = c.num_seqs <= 64 ? stack_nn
                                 : malloc(sizeof(int32_t) * (size_t)c.num_seqs);
  if (!nn)
    FAIL(ATTN_ERR_OUT_OF_MEMORY, "kv cache append: out of memory for n_new");
  for (int64_t s = 0; s < c.num_seqs && st == ATTN_OK; s++) {
    nn[s] = n_new ? n_new[s] : (int32_t)ATTN_MIN(seq_new, (int64_t)INT32_MAX);
    if (nn[s] < 0 || nn[s] > seq_new)
      st = attn_fail(p, ATTN_ERR_INVALID_SEQLENS,
                     "kv cache append: n_new[%lld] = %d must be in 0..%lld",
                     (long long)s, (int)nn[s], (long long)seq_new);
  }
  if (st == ATTN_OK)
    st = check_lens(&c, nn, p);
  if (st == ATTN_OK && c.page_size > 0)
    st = check_pages_written(&c, nn, p);
  attn_rope rr;
  attn_rope_plan rp;
  if (st == ATTN_OK && rope) {
    st = attn_rope_import(rope, rope_size, &rr);
    if (st == ATTN_OK)
      st = attn_rope_plan_make(&rr, c.head_dim, &rp, c.error_message,
                               c.error_message_size);
  }
  for (int64_t s = 0; s < c.num_seqs && st == ATTN_OK; s++) {
    for (int64_t j = 0; j < nn[s]; j++) {
      const int64_t t = c.seq_lens[s] + j;
      double cs[ATTN_ROPE_MAX_PAIRS], sn[ATTN_ROPE_MAX_PAIRS];
      if (rope)
        attn_rope_angles(&rp, t, 0, cs, sn);
      for (int64_t g = 0; g < c.heads_kv; g++) {
        append_row(&k_new, s, j, g, c.head_dim, rope ? &rp : NULL, cs, sn,
                   cache_row(&c, c.k, c.head_dim, s, t, g), c.dtype);
        append_row(&v_new, s, j, g, c.head_dim_v, NULL, NULL, NULL,
                   cache_row(&c, c.v, c.head_dim_v, s, t, g), c.dtype);
      }
    }
  }
  for (int64_t s = 0; s < c.num_seqs && st == ATTN_OK; s++)
    c.seq_lens[s] += nn[s];
  if (nn != stack_nn)
    free(nn);
  return st;
}

/* ------------------------------------------------------------------------ */
/* Attend                                                                   */
/* ------------------------------------------------------------------------ */

/* The caller's params as an attention call on the cache: k, v as
 * [num_seqs, capacity, heads_kv, dim] views (paged: placeholders with
 * zero strides, never read through), kv_lens = seq_lens. */
static attn_status attend_params(const attn_kv_cache *c, attn_params *pp) {
  const attn_params *p = pp;
  if (pp->k.data || pp->v.data || pp->kv_lens)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "kv cache attend: p's k, v and kv_lens must be unset (the cache "
         "supplies them)");
  if (pp->cu_seqlens_q || pp->cu_seqlens_k)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "kv cache attend: cu_seqlens are not supported (q is [num_seqs, "
         "seq_q, heads_q, head_dim])");
  if (pp->dropout_p != 0.0f)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "kv cache attend: dropout_p (%.9g) must be 0 (the cache is for "
         "inference; train with attn_forward)",
         (double)pp->dropout_p);
  if (attn_sparse_on(pp))
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "kv cache attend: sparse patterns and score/mask functions are not "
         "supported (the decode kernel reads every key in range); use "
         "attn_forward on the cache's keys");
  if (pp->q.shape[0] != c->num_seqs)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "kv cache attend: q batch (%lld) must equal the cache's num_seqs "
         "(%lld)",
         (long long)pp->q.shape[0], (long long)c->num_seqs);
  if (pp->q.shape[2] < 1 || pp->q.shape[2] % c->heads_kv != 0)
    FAIL(ATTN_ERR_HEAD_RATIO,
         "kv cache attend: q heads (%lld) must be a multiple of the cache's "
         "kv heads (%lld)",
         (long long)pp->q.shape[2], (long long)c->heads_kv);
  if (pp->q.shape[3] != c->head_dim)
    FAIL(ATTN_ERR_HEAD_DIM,
         "kv cache attend: q head_dim (%lld) must equal the cache's (%lld)",
         (long long)pp->q.shape[3], (long long)c->head_dim);
  const int64_t cap = attn_kv_cache_capacity(c);
  if (c->page_size == 0) {
    pp->k = attn_tensor_bshd(c->k, c->dtype, c->num_seqs, cap, c->heads_kv,
                             c->head_dim);
    pp->v = attn_tensor_bshd(c->v, c->dtype, c->num_seqs, cap, c->heads_kv,
                             c->head_dim_v);
  } else {
    pp->k = attn_tensor_bshd(c->k, c->dtype, c->num_seqs, cap, c->heads_kv,
                             c->head_dim);
    pp->v = attn_tensor_bshd(c->v, c->dtype, c->num_seqs, cap, c->heads_kv,
                             c->head_dim_v);
    pp->k.stride[0] = pp->k.stride[1] = 0;
    pp->v.stride[0] = pp->v.stride[1] = 0;
  }
  pp->kv_lens = c->seq_lens;
  return ATTN_OK;
}

/* A paged pool must not overlap o or lse (the views above cannot tell). */
static attn_status check_pool_overlap(const attn_kv_cache *c,
                                      const attn_params *p) {
  if (c->page_size == 0)
    return ATTN_OK;
  const size_t rows = (size_t)(c->num_pages * c->page_size * c->heads_kv);
  const uintptr_t k0 = (uintptr_t)c->k,
                  k1 = k0 + rows * cache_row_bytes(c, c->head_dim);
  const uintptr_t v0 = (uintptr_t)c->v,
                  v1 = v0 + rows * cache_row_bytes(c, c->head_dim_v);
  uintptr_t lo, hi;
  if (attn_tensor_extent(&p->o, &lo, &hi) &&
      ((lo < k1 && k0 < hi) || (lo < v1 && v0 < hi)))
    FAIL(ATTN_ERR_OVERLAP, "o overlaps the cache's pages");
  if (p->lse) {
    const uintptr_t l0 = (uintptr_t)p->lse;
    const uintptr_t l1 =
        l0 +
        sizeof(float) * (size_t)(p->q.shape[0] * p->q.shape[1] * p->q.shape[2]);
    if ((l0 < k1 && k0 < l1) || (l0 < v1 && v0 < l1))
      FAIL(ATTN_ERR_OVERLAP, "lse overlaps the cache's pages");
  }
  return ATTN_OK;
}

/* q rotated at seq_lens[s] - seq_q + i into f32 [num_seqs, seq_q, hq, d]. */
static void rotate_queries(const attn_kv_cache *c, const attn_params *p,
                           const attn_rope_plan *rp, float *out) {
  const attn_tensor *q = &p->q;
  const int64_t sq = q->shape[1], hq = q->shape[2], d = q->shape[3];
  const size_t es = attn_dtype_size(q->dtype);
  double cs[ATTN_ROPE_MAX_PAIRS], sn[ATTN_ROPE_MAX_PAIRS];
  for (int64_t s = 0; s < q->shape[0]; s++)
    for (int64_t i = 0; i < sq; i++) {
      attn_rope_angles(rp, c->seq_lens[s] - sq + i, 0, cs, sn);
      for (int64_t h = 0; h < hq; h++) {
        const char *at =
            (const char *)q->data +
            (size_t)(s * q->stride[0] + i * q->stride[1] + h * q->stride[2]) *
                es;
        float *row = out + ((s * sq + i) * hq + h) * d;
        attn_load_row_f32(at, q->dtype, q->stride[3], d, 1.0f, row);
        attn_rope_rotate_cs(rp, cs, sn, row);
      }
    }
}

/* Paged keys and values gathered into contiguous [num_seqs, len, hk, d]
 * buffers (the tiled fallback). */
static void gather(const attn_kv_cache *c, int64_t len, void *kd, void *vd) {
  const size_t kb = cache_row_bytes(c, c->head_dim),
               vb = cache_row_bytes(c, c->head_dim_v);
  for (int64_t s = 0; s < c->num_seqs; s++)
    for (int64_t t = 0; t < c->seq_lens[s]; t++)
      for (int64_t g = 0; g < c->heads_kv; g++) {
        const size_t at = (size_t)((s * len + t) * c->heads_kv + g);
        memcpy((char *)kd + at * kb, cache_row(c, c->k, c->head_dim, s, t, g),
               kb);
        memcpy((char *)vd + at * vb, cache_row(c, c->v, c->head_dim_v, s, t, g),
               vb);
      }
}

/* Memory of one attend call. */
typedef struct attend_mem {
  size_t qrot, kgat, vgat, inner, total;
  int64_t glen; /* gathered length (fallback, paged)                  */
} attend_mem;

static attn_status attend_sizes(attn_context *ctx, const attn_kv_cache *c,
                                const attn_plan *pl, int rope, int decode,
                                attend_mem *m) {
  const attn_params *p = &pl->p;
  const attn_problem *pr = &pl->pr;
  m->qrot = m->kgat = m->vgat = m->inner = 0;
  m->glen = 0;
  if (rope)
    m->qrot = round_up(sizeof(float) *
                           (size_t)(pr->batch * pr->sq_max * pr->hq * pr->d),
                       ALIGN);
  if (decode)
    return attn_decode_workspace_size(pl, &m->inner);
  attn_params fp = *p; /* the tiled call (keys from the cache or gathered) */
  if (c->page_size > 0) {
    /* The capacity, as the contiguous view: bias and mask tensors index
     * keys along it. Only stored tokens are copied (and read). */
    m->glen = attn_kv_cache_capacity(c);
    const size_t rows = (size_t)(c->num_seqs * m->glen * c->heads_kv);
    m->kgat = round_up(rows * cache_row_bytes(c, c->head_dim), ALIGN);
    m->vgat = round_up(rows * cache_row_bytes(c, c->head_dim_v), ALIGN);
    fp.k = attn_tensor_bshd(c->k, c->dtype, c->num_seqs, m->glen, c->heads_kv,
                            c->head_dim);
    fp.v = attn_tensor_bshd(c->v, c->dtype, c->num_seqs, m->glen, c->heads_kv,
                            c->head_dim_v);
  }
  fp.workspace = NULL;
  fp.workspace_size = 0;
  return attn_forward_workspace_size_sized(ctx, &fp, sizeof fp, &m->inner);
}

/* The tiled fallback (mask or bias tensor): attn_forward on the cache as
 * tensors, a paged cache gathered first. */
static attn_status attend_tiled(attn_context *ctx, const attn_kv_cache *c,
                                const attn_plan *pl, const attend_mem *m,
                                char *base, const float *qrot) {
  attn_params fp = pl->p;
  if (qrot)
    fp.q = attn_tensor_bshd((void *)qrot, ATTN_DTYPE_F32, pl->pr.batch,
                            pl->pr.sq_max, pl->pr.hq, pl->pr.d);
  if (c->page_size > 0) {
    char *kd = base + m->qrot, *vd = kd + m->kgat;
    gather(c, m->glen, kd, vd);
    fp.k = attn_tensor_bshd(kd, c->dtype, c->num_seqs, m->glen, c->heads_kv,
                            c->head_dim);
    fp.v = attn_tensor_bshd(vd, c->dtype, c->num_seqs, m->glen, c->heads_kv,
                            c->head_dim_v);
  }
  fp.workspace = base + m->qrot + m->kgat + m->vgat;
  fp.workspace_size = m->inner;
  return attn_forward_sized(ctx, &fp, sizeof fp);
}

/* One attend call, checked and sized. */
typedef struct attend_call {
  attn_params pp;
  attn_kv_cache c;
  attn_rope_plan rp;
  int rope, decode;
  attn_plan pl;
  attend_mem m;
} attend_call;

static attn_status attend_prepare(attn_context *ctx, const attn_kv_cache *user,
                                  size_t cache_size, const attn_params *user_p,
                                  size_t params_size, const attn_rope *rope,
                                  size_t rope_size, attend_call *a) {
  attn_status st = attn_params_import(user_p, params_size, &a->pp);
  if (st != ATTN_OK)
    return st;
  const attn_params *p = &a->pp;
  st = attn_kv_cache_import(user, cache_size, &a->c);
  if (st == ATTN_ERR_NULL_POINTER)
    FAIL(st, "kv cache is NULL");
  if (st != ATTN_OK)
    FAIL(st, "attn_kv_cache of %zu bytes: unknown size", cache_size);
  st = attn_kv_cache_check(&a->c, p);
  if (st == ATTN_OK)
    st = attend_params(&a->c, &a->pp);
  if (st != ATTN_OK)
    return st;
  a->rope = rope != NULL;
  if (rope) {
    attn_rope rr;
    st = attn_rope_import(rope, rope_size, &rr);
    if (st == ATTN_OK)
      st = attn_rope_plan_make(&rr, a->c.head_dim, &a->rp, a->pp.error_message,
                               a->pp.error_message_size);
    if (st != ATTN_OK)
      return st;
  }
  st = attn_plan_prepare(ctx, &a->pp, sizeof a->pp, ATTN_PASS_FWD, &a->pl);
  if (st == ATTN_OK)
    st = check_pool_overlap(&a->c, &a->pl.p);
  if (st != ATTN_OK)
    return st;
  a->decode = attn_decode_supports(&a->pl);
  st = attend_sizes(ctx, &a->c, &a->pl, a->rope, a->decode, &a->m);
  if (st != ATTN_OK)
    return st;
  if (__builtin_add_overflow(a->m.qrot + a->m.kgat + a->m.vgat, a->m.inner,
                             &a->m.total) ||
      __builtin_add_overflow(a->m.total, (size_t)ALIGN, &a->m.total))
    FAIL(ATTN_ERR_OVERFLOW, "kv cache attend: workspace size overflows");
  return ATTN_OK;
}

attn_status attn_kv_cache_attend_workspace_size_sized(
    attn_context *ctx, const attn_kv_cache *cache, size_t cache_size,
    const attn_params *p, size_t params_size, const attn_rope *rope,
    size_t rope_size, size_t *bytes) {
  if (!bytes)
    return ATTN_ERR_NULL_POINTER;
  attend_call a;
  const attn_status st = attend_prepare(ctx, cache, cache_size, p, params_size,
                                        rope, rope_size, &a);
  if (st == ATTN_OK)
    *bytes = a.m.total;
  return st;
}

attn_status
attn_kv_cache_attend_sized(attn_context *ctx, const attn_kv_cache *user,
                           size_t cache_size, const attn_params *user_p,
                           size_t params_size, const attn_rope *rope,
                           size_t rope_size) {
  attend_call a;
  attn_status st = attend_prepare(ctx, user, cache_size, user_p, params_size,
                                  rope, rope_size, &a);
  if (st != ATTN_OK)
    return st;
  const attn_params *p = &a.pp;
  void *mem;
  char *base;
  st = attn_workspace_acquire(a.pl.ctx, p, a.m.total, &mem, &base);
  if (st != ATTN_OK)
    return st;
  float *qrot = NULL;
  if (a.rope) {
    qrot = (float *)base;
    rotate_queries(&a.c, p, &a.rp, qrot);
  }
  if (a.decode) {
    attn_plan *pl = &a.pl;
    if (qrot)
      pl->p.q = attn_tensor_bshd(qrot, ATTN_DTYPE_F32, pl->pr.batch,
                                 pl->pr.sq_max, pl->pr.hq, pl->pr.d);
    attn_kv_src src;
    src.page_size = a.c.page_size;
    src.block_table = a.c.block_table;
    src.blocks_per_seq = a.c.blocks_per_seq;
    if (a.c.page_size == 0) {
      src.k = pl->p.k;
      src.v = pl->p.v;
    } else {
      src.k = attn_tensor_bshd(a.c.k, a.c.dtype, a.c.num_pages, a.c.page_size,
                               a.c.heads_kv, a.c.head_dim);
      src.v = attn_tensor_bshd(a.c.v, a.c.dtype, a.c.num_pages, a.c.page_size,
                               a.c.heads_kv, a.c.head_dim_v);
    }
    st = attn_decode_run(pl, &src, base + a.m.qrot, a.m.inner);
  } else {
    st = attend_tiled(ctx, &a.c, &a.pl, &a.m, base, qrot);
  }
  attn_workspace_release(a.pl.ctx, mem);
  return st;
}
