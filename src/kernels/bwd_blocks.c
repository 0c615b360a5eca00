/* The backward's blocks (bwd_job.h): a key tile packed into a thread's
 * scratch (its K and V panels, rows of K), and the description of one
 * block (query tile x key tile) that the ISA kernel runs, for phases A
 * and C of bwd.c. */
#include "kernels/bwd_job.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Blocks                                                                  */
/* ---------------------------------------------------------------------- */

/* Key rows a block of nkeys keys reads: its columns, nkeys rounded up to
 * a whole panel (bwd_body.h: ncol); the rows past nkeys are zeros. */
static int block_cols(const attn_bwd_kernel *k, int nkeys) {
  return (nkeys + k->nr - 1) / k->nr * k->nr;
}

/* Rows of the dK and dV accumulators a block of nkeys keys adds to: its
 * columns in steps of the kernel's mr (less than KEY_PAD past bc). */
size_t attn_bwd_acc_rows(const attn_bwd_kernel *k, int nkeys) {
  const int n = (block_cols(k, nkeys) + k->mr - 1) / k->mr * k->mr;
  return (size_t)ATTN_MIN(n, k->bc + KEY_PAD);
}

_Static_assert(4 * ATTN_MAX_HEAD_DIM <= ATTN_TILE_Q * ATTN_TILE_K,
               "pack_keys: four V rows fit in the scores buffer");

/* Rows x[0..3] (n floats each, row stride ldx) into four adjacent columns
 * of a panel whose rows are nr floats apart: p[k nr + i] = x[i][k]. With
 * SSE, 4 x 4 transposes: one 16-byte store per panel row and four keys
 * instead of four scalar stores a panel row apart. A copy either way. */
static void transpose4(const float *x, int64_t ldx, int64_t n, int64_t nr,
                       float *p) {
  int64_t k = 0;
#if defined(__SSE2__)
  for (; k + 4 <= n; k += 4) {
    __m128 a = _mm_loadu_ps(x + k), b = _mm_loadu_ps(x + ldx + k);
    __m128 c = _mm_loadu_ps(x + 2 * ldx + k), e = _mm_loadu_ps(x + 3 * ldx + k);
    _MM_TRANSPOSE4_PS(a, b, c, e);
    _mm_storeu_ps(p + k * nr, a);
    _mm_storeu_ps(p + (k + 1) * nr, b);
    _mm_storeu_ps(p + (k + 2) * nr, c);
    _mm_storeu_ps(p + (k + 3) * nr, e);
  }
#endif
  for (; k < n; k++)
    for (int i = 0; i < 4; i++)
      p[k * nr + i] = x[i * ldx + k];
}

/* Packs keys j0..j0+nkeys-1 of sequence sq, kv head g, into the thread's
 * kt, vt and krow, with zeros up to block_cols keys (a short last tile
 * packs no more: a block reads no further). Four live keys at a time
 * where the panel width allows: their rows loaded (K into krow, V into
 * the scores buffer, free until the tile's first block), then transposed
 * into the panels (transpose4). */
void attn_bwd_pack_keys(const bwd_job *job, const attn_seq *sq, int64_t g,
                        int64_t j0, int nkeys, char *ws) {
  const attn_params *p = job->pr->p;
  const bwd_layout *w = &job->w;
  const int64_t d = job->pr->d, dv = job->pr->dv, dp = w->dp;
  const int nr = job->k->nr, ncol = block_cols(job->k, nkeys);
  float *kt = (float *)(ws + w->kt), *vt = (float *)(ws + w->vt);
  float *krow = (float *)(ws + w->krow), *tmp = (float *)(ws + w->tmp);
  float *vrows = (float *)(ws + w->s); /* 4 dv <= br bc floats */
  for (int r = 0; r < ncol; r++) {
    float *kr = krow + r * dp;
    float *ktp = kt + (r / nr) * d * nr + r % nr;
    float *vtp = vt + (r / nr) * dv * nr + r % nr;
    if (r < nkeys) {
      const int four = nr % 4 == 0 && r % 4 == 0 && r + 4 <= nkeys;
      const int n = four ? 4 : 1;
      for (int i = 0; i < n; i++) {
        const int64_t j = sq->k_off + j0 + r + i;
        if (r + i + ATTN_PREFETCH_ROWS < nkeys) {
          attn_prefetch_elem(&p->k, sq->q_bat, j + ATTN_PREFETCH_ROWS, g, d, 0);
          attn_prefetch_elem(&p->v, sq->q_bat, j + ATTN_PREFETCH_ROWS, g, dv,
                             0);
        }
        attn_load_row_poison(attn_elem(&p->k, sq->q_bat, j, g, 0), p->k.dtype,
                             p->k.stride[3], d, 1.0f, kr + i * dp);
        memset(kr + i * dp + d, 0, sizeof(float) * (size_t)(dp - d));
        attn_load_row_f32(attn_elem(&p->v, sq->q_bat, j, g, 0), p->v.dtype,
                          p->v.stride[3], dv, 1.0f,
                          four ? vrows + i * dv : tmp);
      }
      if (four) {
        transpose4(kr, dp, d, nr, ktp);
        transpose4(vrows, dv, dv, nr, vtp);
        r += 3;
        continue;
      }
      for (int64_t c = 0; c < d; c++)
        ktp[c * nr] = kr[c];
      for (int64_t c = 0; c < dv; c++)
        vtp[c * nr] = tmp[c];
    } else {
      memset(kr, 0, sizeof(float) * (size_t)dp);
      for (int64_t c = 0; c < d; c++)
        ktp[c * nr] = 0.0f;
      for (int64_t c = 0; c < dv; c++)
        vtp[c * nr] = 0.0f;
    }
  }
}

/* Fills everything of the block (query tile i0.. of head h, keys
 * j0..j0+nkeys-1) but the accumulators; returns 0 when no element of it
 * may attend (nothing to do). */
int attn_bwd_block_setup(const bwd_job *job, const attn_seq *sq, int64_t h,
                         int64_t i0, int rows, int64_t j0, int nkeys, char *ws,
                         attn_bblock *t) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const bwd_layout *w = &job->w;
  int n;
  const attn_tile_run *runs =
      attn_tiles_get(job->tiles, sq->b, h, i0 / job->k->br, &n);
  const attn_tile_kind kind = attn_tiles_kind(runs, n, j0 / job->k->bc);
  if (kind == ATTN_TILE_EMPTY)
    return 0;
  int64_t *lo = (int64_t *)(ws + w->lo), *hi = (int64_t *)(ws + w->hi);
  attn_plan_tile(job->pl, sq, h, i0, rows, lo, hi, &t->sc, &t->mv);
  const int64_t row = h * w->tqp + seq_row0(p, sq) + i0;
  t->rows = rows;
  t->nkeys = nkeys;
  t->partial = kind == ATTN_TILE_PARTIAL;
  t->i0 = i0;
  t->j0 = j0;
  t->d = pr->d;
  t->dv = pr->dv;
  t->dp = w->dp;
  t->dvp = w->dvp;
  t->q = job->qs + row * w->dp;
  t->dout = job->dos + row * w->dvp;
  t->lse = job->l2 + row;
  t->dd = job->dd + row;
  t->kt = (const float *)(ws + w->kt);
  t->vt = (const float *)(ws + w->vt);
  t->krow = (const float *)(ws + w->krow);
  t->s = (float *)(ws + w->s);
  t->ds = (float *)(ws + w->ds);
  t->g = (float *)(ws + w->g);
  t->z = (float *)(ws + w->z);
  t->gm = (float *)(ws + w->gm);
  /* bf16 kernel: P and dS are rounded to bf16 only for a gradient that is
   * stored in bf16 (docs/bf16.md) */
  t->qscale = pr->scale;
  t->dp16 = use_dp16(p);
  t->pv16 = p->dv.dtype == ATTN_DTYPE_BF16 && p->dout.dtype == ATTN_DTYPE_BF16;
  t->dk16 = p->dk.dtype == ATTN_DTYPE_BF16;
  t->dq16 = p->dq.dtype == ATTN_DTYPE_BF16;
  t->do16 = p->dout.dtype == ATTN_DTYPE_BF16;
  t->bf = (uint16_t *)(ws + w->bf);
  t->keys_bf16 = 0;
  t->rows16 = NULL;
  attn_dropout_init(&t->drop, p->dropout_seed, p->dropout_p, sq->b, h);
  t->dk = t->dvacc = t->dq = t->dt5 = NULL;
  t->tiles_on = NULL; /* per block unless the caller says otherwise */
  return 1;
}
