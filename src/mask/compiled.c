/* Compiled masks: the tile lists of attn_tiles made once, kept with a
 * copy of everything they were made from, so that a call can check that
 * it asks for the same mask (attn.h, "Compiled masks"). */
#include "mask/mask.h"

#include <stdlib.h>
#include <string.h>

struct attn_mask {
  attn_tiles tiles;
  void *mem;
  /* what the lists were compiled from */
  attn_params key;    /* mask options and shapes; pointers cleared       */
  int64_t batch;      /* sequences                                       */
  int32_t *arrays;    /* kv_lens, cu_seqlens_q, cu_seqlens_k (if given)  */
  int64_t *offsets;   /* q_pos_offsets, k_pos_offsets (if given)         */
  int has[5];         /* which of the five arrays were given             */
  const void *tensor; /* the mask tensor's data pointer                  */
  int32_t *global;    /* global_idx's values (key.global_count of them)  */
};

/* The fields of p that decide the tile lists. */
static void mask_key(const attn_params *p, attn_params *k) {
  memset(k, 0, sizeof *k);
  for (int i = 0; i < 4; i++) {
    k->q.shape[i] = p->q.shape[i];
    k->k.shape[i] = p->k.shape[i];
    k->mask.shape[i] = p->mask.shape[i];
    k->mask.stride[i] = p->mask.stride[i];
  }
  k->causal = p->causal;
  k->window_left = p->window_left;
  k->window_right = p->window_right;
  k->varlen_batch = p->varlen_batch;
  k->q_pos_offset = p->q_pos_offset;
  k->k_pos_offset = p->k_pos_offset;
  k->prefix_len = p->prefix_len;
  /* 0.5: the sparse patterns (global_idx's values are kept apart) */
  k->global_count = p->global_count;
  k->sparse_kind = p->sparse_kind;
  k->sparse_l = p->sparse_l;
  k->sparse_c = p->sparse_c;
  k->block_mask = p->block_mask;
  k->block_q = p->block_q;
  k->block_k = p->block_k;
  k->mask_mod = p->mask_mod;
  k->mask_tile = p->mask_tile;
  k->mod_by_head = p->mod_by_head;
  k->mod_user = p->mod_user;
}

static int same_sparse(const attn_params *a, const attn_params *b) {
  for (int i = 0; i < 4; i++)
    if (a->block_mask.shape[i] != b->block_mask.shape[i] ||
        a->block_mask.stride[i] != b->block_mask.stride[i])
      return 0;
  return a->global_count == b->global_count &&
         a->sparse_kind == b->sparse_kind && a->sparse_l == b->sparse_l &&
         a->sparse_c == b->sparse_c &&
         a->block_mask.data == b->block_mask.data && a->block_q == b->block_q &&
         a->block_k == b->block_k && a->mask_mod == b->mask_mod &&
         a->mask_tile == b->mask_tile && a->mod_by_head == b->mod_by_head &&
         a->mod_user == b->mod_user;
}

static int same_key(const attn_params *a, const attn_params *b) {
  for (int i = 0; i < 4; i++)
    if (a->q.shape[i] != b->q.shape[i] || a->k.shape[i] != b->k.shape[i] ||
        a->mask.shape[i] != b->mask.shape[i] ||
        a->mask.stride[i] != b->mask.stride[i])
      return 0;
  return a->causal == b->causal && a->window_left == b->window_left &&
         a->window_right == b->window_right &&
         a->varlen_batch == b->varlen_batch &&
         a->q_pos_offset == b->q_pos_offset &&
         a->k_pos_offset == b->k_pos_offset && a->prefix_len == b->prefix_len;
}

/* The five optional arrays of p, with their lengths. */
static void arrays_of(const attn_params *p, int64_t batch,
                      const int32_t *a32[3], const int64_t *a64[2],
                      int64_t n[5]) {
  a32[0] = p->kv_lens;
  a32[1] = p->cu_seqlens_q;
  a32[2] = p->cu_seqlens_k;
  a64[0] = p->q_pos_offsets;
  a64[1] = p->k_pos_offsets;
  n[0] = batch;
  n[1] = n[2] = batch + 1;
  n[3] = n[4] = batch;
}

attn_status attn_mask_compile_sized(const attn_params *user, size_t size,
                                    attn_mask **out) {
  attn_params full, *p = &full;
  attn_status st = attn_params_import(user, size, &full);
  if (st != ATTN_OK)
    return st;
  if (!out)
    return attn_fail(p, ATTN_ERR_NULL_POINTER, "out is NULL");
  *out = NULL;
  p->compiled_mask = NULL;
  attn_problem pr;
  st = attn_validate(p, &pr);
  if (st != ATTN_OK)
    return st;
  attn_mask *m = calloc(1, sizeof *m);
  size_t bytes;
  st = m ? attn_tiles_plan(&pr, &m->tiles, &bytes) : ATTN_ERR_OUT_OF_MEMORY;
  const int32_t *a32[3];
  const int64_t *a64[2];
  int64_t n[5];
  arrays_of(p, pr.batch, a32, a64, n);
  if (st == ATTN_OK) {
    m->mem = aligned_alloc(64, (bytes + 63) / 64 * 64);
    m->arrays = malloc(sizeof(int32_t) * (size_t)(3 * (pr.batch + 1)));
    m->offsets = malloc(sizeof(int64_t) * (size_t)(2 * pr.batch + 1));
    m->global = malloc(sizeof(int32_t) * (size_t)(p->global_count + 1));
    if (!m->mem || !m->arrays || !m->offsets || !m->global)
      st = ATTN_ERR_OUT_OF_MEMORY;
  }
  if (st != ATTN_OK) {
    attn_mask_free(m);
    return attn_fail(p, st, "could not allocate the compiled mask");
  }
  attn_tiles_attach(&m->tiles, &pr, m->mem);
  attn_tiles_fill(&m->tiles, &pr, 0, 1);
  mask_key(p, &m->key);
  m->batch = pr.batch;
  m->tensor = p->mask.data;
  if (p->global_count > 0)
    memcpy(m->global, p->global_idx, sizeof(int32_t) * (size_t)p->global_count);
  for (int i = 0; i < 3; i++)
    if ((m->has[i] = a32[i] != NULL))
      memcpy(m->arrays + i * (pr.batch + 1), a32[i],
             sizeof(int32_t) * (size_t)n[i]);
  for (int i = 0; i < 2; i++)
    if ((m->has[3 + i] = a64[i] != NULL))
      memcpy(m->offsets + i * pr.batch, a64[i],
             sizeof(int64_t) * (size_t)n[3 + i]);
  *out = m;
  return ATTN_OK;
}

void attn_mask_free(attn_mask *m) {
  if (!m)
    return;
  free(m->mem);
  free(m->arrays);
  free(m->offsets);
  free(m->global);
  free(m);
}

attn_status attn_mask_tile_counts(const attn_mask *m, int64_t *full,
                                  int64_t *partial, int64_t *empty) {
  if (!m || !full || !partial || !empty)
    return ATTN_ERR_NULL_POINTER;
  const attn_tiles *t = &m->tiles;
  int64_t f = 0, pa = 0, all = 0;
  const int64_t nkt = (m->key.k.shape[1] + ATTN_TILE_K - 1) / ATTN_TILE_K;
  for (int64_t s = 0; s < t->nslots; s++) {
    const attn_tile_run *r = t->run + s * t->cap;
    for (int i = 0; i < t->nruns[s]; i++) {
      if (r[i].kind == ATTN_TILE_FULL)
        f += r[i].kt1 - r[i].kt0;
      else
        pa += r[i].kt1 - r[i].kt0;
    }
    all += nkt;
  }
  *full = f;
  *partial = pa;
  *empty = all - f - pa;
  return ATTN_OK;
}

attn_status attn_mask_lookup(const attn_problem *pr, const attn_tiles **out) {
  const attn_params *p = pr->p;
  const attn_mask *m = p->compiled_mask;
  *out = NULL;
  if (!m)
    return ATTN_OK;
  attn_params k;
  mask_key(p, &k);
  if (!same_key(&m->key, &k) || m->batch != pr->batch)
    return attn_fail(p, ATTN_ERR_INVALID_ARGUMENT,
                     "compiled_mask was compiled for other shapes or mask "
                     "options (causal, window, prefix, positions)");
  if (m->tensor != p->mask.data)
    return attn_fail(p, ATTN_ERR_INVALID_ARGUMENT,
                     "compiled_mask was compiled for another mask tensor");
  if (!same_sparse(&m->key, &k) ||
      (k.global_count > 0 && memcmp(m->global, p->global_idx,
                                    sizeof(int32_t) * (size_t)k.global_count)))
    return attn_fail(p, ATTN_ERR_INVALID_ARGUMENT,
                     "compiled_mask was compiled with other sparse patterns "
                     "(global_idx, sparse_kind/l/c, block_mask, block_q/k, "
                     "mask_mod, mask_tile, mod_by_head, mod_user)");
  const int32_t *a32[3];
  const int64_t *a64[2];
  int64_t n[5];
  arrays_of(p, pr->batch, a32, a64, n);
  static const char *const names[5] = {"kv_lens", "cu_seqlens_q",
                                       "cu_seqlens_k", "q_pos_offsets",
                                       "k_pos_offsets"};
  for (int i = 0; i < 5; i++) {
    const int given = i < 3 ? a32[i] != NULL : a64[i - 3] != NULL;
    int same = given == m->has[i];
    if (same && given && i < 3)
      same = !memcmp(a32[i], m->arrays + i * (pr->batch + 1),
                     sizeof(int32_t) * (size_t)n[i]);
    else if (same && given)
      same = !memcmp(a64[i - 3], m->offsets + (i - 3) * pr->batch,
                     sizeof(int64_t) * (size_t)n[i]);
    if (!same)
      return attn_fail(p, ATTN_ERR_INVALID_ARGUMENT,
                       "compiled_mask was compiled with other %s", names[i]);
  }
  *out = &m->tiles;
  return ATTN_OK;
}
