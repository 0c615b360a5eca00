/* Shared by the forward and backward frameworks: see plan.h. */
#include "kernels/plan.h"

#include <string.h>

attn_status attn_plan_prepare(attn_context *ctx, const attn_params *user,
                              size_t size, attn_pass pass, attn_plan *pl) {
  attn_status st = attn_params_import(user, size, &pl->p);
  if (st != ATTN_OK)
    return st;
  const attn_params *p = &pl->p;
  st = pass == ATTN_PASS_BWD ? attn_validate_bwd(p, &pl->pr)
                             : attn_validate(p, &pl->pr);
  if (st != ATTN_OK)
    return st;
  pl->pr.p = p;
  st = attn_context_resolve(ctx, p, &pl->ctx);
  if (st != ATTN_OK)
    return st;
  attn_isa isa;
  st = attn_isa_resolve(pl->ctx, p->isa, &isa);
  if (st == ATTN_ERR_UNSUPPORTED_ISA)
    return attn_fail(p, st, "isa %s is not supported by this CPU",
                     attn_isa_name(p->isa == ATTN_ISA_AUTO
                                       ? attn_context_isa(pl->ctx)
                                       : p->isa));
  if (st != ATTN_OK)
    return attn_fail(p, st, "invalid isa");
  attn_kernels_for(isa, &pl->k);
  pl->threads =
      p->num_threads > 0 ? p->num_threads : attn_context_threads(pl->ctx);
  st = attn_mask_lookup(&pl->pr, &pl->compiled);
  if (st != ATTN_OK)
    return st;
  st = attn_tiles_plan(&pl->pr, &pl->tiles, &pl->tiles_bytes);
  if (st != ATTN_OK)
    return attn_fail(p, st, "the mask's tile lists overflow");
  if (pl->compiled)
    pl->tiles_bytes = 0; /* the call walks the compiled lists */
  if (p->rel_bias)
    attn_t5_setup(p, pl->pr.hq, pl->pr.sq_max, pl->pr.sk_max, &pl->t5);
  return ATTN_OK;
}

size_t attn_ws_add(attn_ws *w, size_t count, size_t elem) {
  size_t n;
  const size_t at = w->off;
  if (__builtin_mul_overflow(count, elem, &n) ||
      __builtin_add_overflow(n, (size_t)63, &n) ||
      __builtin_add_overflow(w->off, n / 64 * 64, &w->off))
    w->overflow = 1;
  return at;
}

int64_t attn_plan_tile(const attn_plan *pl, const attn_seq *s, int64_t h,
                       int64_t i0, int rows, int64_t *lo, int64_t *hi,
                       attn_score *sc, attn_mask_view *mv) {
  const attn_params *p = &pl->p;
  attn_pos pos;
  attn_pos_seq(p, s, &pos);
  attn_mask_rows(p, s, &pos, i0, rows, lo, hi);
  attn_score_setup(p, s, &pos, h, sc);
  sc->t5 = p->rel_bias ? &pl->t5 : NULL;
  attn_mask_tensor_view(p, s->b, h, mv);
  attn_sparse_view(p, s, &pos, h, mv);
  mv->i0 = i0;
  mv->lo = lo;
  mv->hi = hi;
  int64_t jh = -1;
  for (int r = 0; r < rows; r++)
    if (lo[r] <= hi[r])
      jh = ATTN_MAX(jh, hi[r]);
  return jh + 1;
}
