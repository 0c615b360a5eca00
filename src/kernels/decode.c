/* The split-KV decode framework (decode.h): which rows and keys go
 * together, threads, the merge of the chunks.
 *
 * Rows. The rows of one (sequence b, kv head g) are its query heads x its
 * query rows, ordered query-major (row rho = (i - i0) * group + head in
 * group), so all query heads of one query row sit side by side and one
 * pass over the kv head's keys serves them all (GQA, MQA). They are cut at
 * every query tile of ATTN_TILE_Q rows (the unit of the non-finite rule in
 * attn.h) and then into units of at most ATTN_DEC_RB rows.
 *
 * Keys. Key chunk c of a sequence is keys [c * ATTN_DECODE_CHUNK, (c + 1) *
 * ATTN_DECODE_CHUNK): the same chunks for every thread count, for paged and
 * contiguous storage and for attn_forward and the cache. A unit visits the
 * chunks that meet the union of its rows' key intervals (mask/rows.c), and
 * reads only keys inside that union. Nothing is packed: the kernel reads K
 * and V rows where they are (converting bf16/f16 on the fly).
 *
 * Work. An item is (unit, chunk): the kernel writes the chunk's partial
 * (m, l, unnormalised o) into the unit's slot. The thread that finishes a
 * unit's last chunk (an acq_rel counter) merges its chunks in chunk order:
 *   M = max_c m_c,  L = sum_c l_c 2^((m_c - M) log2 e),
 *   o = (sum_c o_c 2^((m_c - M) log2 e)) / L,  lse = M + log L,
 * so every output bit is independent of the thread count and of which
 * thread merges. Units run in waves whose slots fit in ATTN_DEC_WAVE_BYTES
 * (one wave unless the call is huge), a barrier between waves. */
#include "kernels/decode.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64
static const float kLog2eDec = 1.4426950408889634f; /* simd.h's kLog2e */
#define ATTN_DEC_WAVE_BYTES ((size_t)64 << 20)

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* The shape of the work, from the call alone. */
typedef struct dec_geo {
  int64_t group, nq; /* query heads per kv head, query rows per sequence */
  int64_t uft;       /* units per full query tile                        */
  int64_t upg;       /* units per (sequence, kv head)                    */
  int64_t units;     /* all of them: (sequence, unit of group, kv head),
                        kv head fastest                                  */
  int64_t groups;    /* units / heads_kv                                 */
  int64_t hb, nhb;   /* kv heads per item, head blocks                   */
  int64_t rows_max;  /* rows of the largest unit                         */
  int64_t nch;       /* chunks of the longest sequence (>= 1)            */
  int64_t wave;      /* groups per wave                                  */
  int64_t nwaves;
  int64_t dp, dvp; /* head dims padded to the vector width             */
  size_t slot;     /* bytes of one unit's partials                     */
  size_t counters; /* bytes: nwaves + units atomic counters            */
  size_t q, s, stage, rowp, krow, vrow, qi, lo, hi, sc, obuf, lut, part, qt;
  size_t per_thread;
  size_t total;
  int threads;
} dec_geo;

int attn_decode_supports(const attn_plan *pl) {
  const attn_params *p = &pl->p;
  /* dropout (training) stays on the tiled kernel, which applies it */
  return !p->mask.data && !p->bias.data && !pl->pr.varlen &&
         p->dropout_p == 0.0f;
}

int attn_decode_eligible(const attn_plan *pl) {
  return attn_decode_supports(pl) && pl->pr.sq_max <= ATTN_DECODE_MAX_ROWS;
}

static attn_status geometry(const attn_plan *pl, dec_geo *g) {
  const attn_problem *pr = &pl->pr;
  const int64_t vl = pl->k.dec->vl;
  g->group = pr->group;
  g->nq = pr->sq_max;
  const int64_t tq = ATTN_TILE_Q, rb = ATTN_DEC_RB;
  g->uft = (g->group * tq + rb - 1) / rb;
  const int64_t full = g->nq / tq, last = g->nq % tq;
  g->upg = full * g->uft + (g->group * last + rb - 1) / rb;
  g->rows_max = ATTN_MIN(rb, g->group * ATTN_MIN(tq, g->nq));
  g->nch = ATTN_MAX((int64_t)1,
                    (pr->sk_max + ATTN_DECODE_CHUNK - 1) / ATTN_DECODE_CHUNK);
  if (__builtin_mul_overflow(pr->batch, g->upg, &g->groups) ||
      __builtin_mul_overflow(g->groups, pr->hk, &g->units))
    return ATTN_ERR_OVERFLOW;
  g->dp = (pr->d + vl - 1) / vl * vl;
  g->dvp = (pr->dv + vl - 1) / vl * vl;
  attn_ws t = {0, 0};
  const size_t rows = (size_t)g->rows_max;
  const size_t one = attn_ws_mul(&t, rows, (size_t)(g->dvp + 2));
  g->slot = round_up(
      attn_ws_mul(&t, attn_ws_mul(&t, one, (size_t)g->nch), sizeof(float)),
      ALIGN);
  const size_t gslot = attn_ws_mul(&t, g->slot, (size_t)pr->hk);
  g->wave = g->groups;
  if (gslot > 0 && g->groups > 0 &&
      (size_t)g->groups > ATTN_DEC_WAVE_BYTES / gslot)
    g->wave = ATTN_MAX((int64_t)1, (int64_t)(ATTN_DEC_WAVE_BYTES / gslot));
  g->nwaves = g->wave > 0 ? (g->groups + g->wave - 1) / g->wave : 0;
  /* Kv heads per item: as many as fit in ATTN_DEC_RB rows, so a thread
   * reads the keys of a chunk in memory order (the heads of one key are
   * adjacent in bshd storage and in the cache; reading one head at a time
   * walks the memory in 4 KiB strides, which the hardware prefetchers do
   * not follow: a third of the bandwidth measured here), halved while that
   * leaves fewer than two items per thread. Results do not depend on it:
   * each (unit, chunk) is computed alike in any item. */
  int64_t hb =
      ATTN_MIN(pr->hk, ATTN_MAX((int64_t)1, ATTN_DEC_RB / g->rows_max));
  while (hb > 1 &&
         g->wave * g->nch * ((pr->hk + hb - 1) / hb) < 2 * (int64_t)pl->threads)
    hb = (hb + 1) / 2;
  g->hb = hb;
  g->nhb = (pr->hk + hb - 1) / hb;
  g->counters = round_up(
      attn_ws_mul(&t, (size_t)(g->nwaves + g->units), sizeof(atomic_llong)),
      ALIGN);
  /* One thread's scratch. */
  attn_ws s = {0, 0};
  const size_t stage_w = (size_t)ATTN_MAX(g->dp, g->dvp);
  const size_t hrows = rows * (size_t)g->hb;
  g->q = attn_ws_add(&s, hrows * (size_t)g->dp, sizeof(float));
  g->s = attn_ws_add(&s, hrows * ATTN_DEC_LDS, sizeof(float));
  g->stage =
      attn_ws_add(&s, (size_t)ATTN_DEC_STAGE(g->hb) * stage_w, sizeof(float));
  g->part = attn_ws_add(&s, (size_t)g->hb, sizeof(float *));
  g->rowp = attn_ws_add(&s, ATTN_DEC_SUB, sizeof(float *));
  g->krow = attn_ws_add(&s, ATTN_DECODE_CHUNK, sizeof(void *));
  g->vrow = attn_ws_add(&s, ATTN_DECODE_CHUNK, sizeof(void *));
  g->qi = attn_ws_add(&s, rows, sizeof(int64_t));
  g->lo = attn_ws_add(&s, rows, sizeof(int64_t));
  g->hi = attn_ws_add(&s, rows, sizeof(int64_t));
  g->sc = attn_ws_add(&s, hrows, sizeof(attn_score));
  g->obuf = attn_ws_add(&s, (size_t)g->dvp, sizeof(float));
  g->lut = attn_ws_add(&s, ATTN_DEC_LDS, sizeof(float));
  /* the AMX Q K's B operands: a bf16 q's pairs */
  g->qt = pl->k.isa == ATTN_ISA_AMX_BF16 && pl->p.q.dtype == ATTN_DTYPE_BF16
              ? attn_ws_add(&s, hrows * (size_t)(g->dp / 2), sizeof(uint32_t))
              : 0;
  g->per_thread = s.off;
  /* Threads: no more than the items of one wave. */
  int64_t n = pl->threads;
  const int64_t items = g->wave * g->nch * g->nhb;
  n = ATTN_MAX((int64_t)1, ATTN_MIN(n, items));
  g->threads = (int)ATTN_MIN(n, (int64_t)ATTN_MAX_THREADS);
  size_t all = attn_ws_mul(&t, g->per_thread, (size_t)g->threads);
  const size_t slots = attn_ws_mul(&t, gslot, (size_t)g->wave);
  if (t.overflow || s.overflow || __builtin_add_overflow(all, slots, &all) ||
      __builtin_add_overflow(all, g->counters, &all) ||
      __builtin_add_overflow(all, (size_t)ALIGN, &all))
    return ATTN_ERR_OVERFLOW;
  g->total = all;
  return ATTN_OK;
}

attn_status attn_decode_workspace_size(const attn_plan *pl, size_t *bytes) {
  dec_geo g;
  attn_status st = geometry(pl, &g);
  if (st != ATTN_OK)
    return attn_fail(&pl->p, st, "decode workspace size overflows");
  *bytes = g.total;
  return ATTN_OK;
}

typedef struct dec_job {
  const attn_plan *pl;
  const attn_problem *pr;
  const attn_kv_src *src;
  const attn_decode_kernel *k;
  /* step (1) with bf16 dot products (bf16 q and k, decode_bf16dot.h), or
   * NULL: the kernel's own, on f32 q */
  void (*qk_bf16)(const attn_dec_chunk *c);
  /* step (4) with them (bf16 v and output too, P rounded), or NULL */
  void (*pv_bf16)(const attn_dec_chunk *c);
  dec_geo g;
  const attn_t5 *t5;      /* the plan's T5 buckets, or NULL             */
  atomic_llong *wave_ctr; /* [nwaves] items taken                      */
  atomic_llong *done;     /* [units] chunks finished                   */
  char *slots;            /* [wave][heads_kv][slot]                    */
  char *scratch;          /* [threads][per_thread]                     */
} dec_job;

/* One unit after setup: its rows and their intervals. */
typedef struct dec_unit {
  attn_seq sq;
  attn_pos pos;
  int64_t b, g; /* sequence, kv head                           */
  int64_t i0;   /* first query row of its query tile            */
  int64_t rho0; /* its first row inside the tile's rows         */
  int rows;
  int64_t c0, nc;   /* chunks c0 .. c0 + nc - 1                    */
  int64_t jlo, jhi; /* union of the rows' intervals              */
} dec_unit;

static int64_t row_head(const dec_job *job, const dec_unit *u, int r) {
  return u->g * job->g.group + (u->rho0 + r) % job->g.group;
}

/* Unit index u: its sequence, kv head, rows and their key intervals (into
 * the thread's qi, lo, hi). */
static void unit_setup(const dec_job *job, int64_t ui, char *ws, dec_unit *u) {
  const attn_problem *pr = job->pr;
  const dec_geo *g = &job->g;
  u->g = ui % pr->hk;
  u->b = ui / pr->hk / g->upg;
  const int64_t k = ui / pr->hk % g->upg, qt = k / g->uft, rb = k % g->uft;
  u->i0 = qt * ATTN_TILE_Q;
  u->rho0 = rb * ATTN_DEC_RB;
  const int64_t tile_rows = g->group * ATTN_MIN(ATTN_TILE_Q, g->nq - u->i0);
  u->rows = (int)ATTN_MIN(ATTN_DEC_RB, tile_rows - u->rho0);
  attn_problem_seq(pr, u->b, &u->sq);
  attn_pos_seq(pr->p, &u->sq, &u->pos);
  int64_t *qi = (int64_t *)(ws + g->qi), *lo = (int64_t *)(ws + g->lo);
  int64_t *hi = (int64_t *)(ws + g->hi);
  u->jlo = INT64_MAX;
  u->jhi = -1;
  for (int r = 0; r < u->rows; r++) {
    qi[r] = u->i0 + (u->rho0 + r) / g->group;
    if (r > 0 && qi[r] == qi[r - 1]) {
      lo[r] = lo[r - 1];
      hi[r] = hi[r - 1];
    } else {
      attn_mask_rows(pr->p, &u->sq, &u->pos, qi[r], 1, &lo[r], &hi[r]);
    }
    if (lo[r] <= hi[r]) {
      u->jlo = ATTN_MIN(u->jlo, lo[r]);
      u->jhi = ATTN_MAX(u->jhi, hi[r]);
    }
  }
  u->c0 = 0;
  u->nc = 0;
  if (u->jhi >= 0) {
    u->c0 = u->jlo / ATTN_DECODE_CHUNK;
    u->nc = u->jhi / ATTN_DECODE_CHUNK + 1 - u->c0;
  }
}

/* Addresses of K and V rows ja .. jb - 1 of sequence b, kv head g. */
static void key_rows(const attn_kv_src *src, int64_t b, int64_t g, int64_t ja,
                     int64_t jb, const void **kr, const void **vr) {
  if (src->page_size == 0) {
    for (int64_t j = ja; j < jb; j++) {
      kr[j - ja] = attn_elem(&src->k, b, j, g, 0);
      vr[j - ja] = attn_elem(&src->v, b, j, g, 0);
    }
    return;
  }
  const int64_t ps = src->page_size;
  const int32_t *bt = src->block_table + b * src->blocks_per_seq;
  int64_t blk = ja / ps, row = ja % ps;
  for (int64_t j = ja; j < jb; j++) {
    kr[j - ja] = attn_elem(&src->k, bt[blk], row, g, 0);
    vr[j - ja] = attn_elem(&src->v, bt[blk], row, g, 0);
    if (++row == ps) {
      row = 0;
      blk++;
    }
  }
}

/* How the kernel reads rows of dtype dt, element stride st, n elements
 * (np padded): in place when dense and a whole number of vectors. */
static int read_mode(attn_dtype dt, int64_t st, int64_t n, int64_t np) {
  if (dt == ATTN_DTYPE_Q8_0 || dt == ATTN_DTYPE_Q4_0) /* whole blocks */
    return dt == ATTN_DTYPE_Q8_0 ? ATTN_DEC_Q8_0 : ATTN_DEC_Q4_0;
  if (st != 1 || n != np)
    return ATTN_DEC_STAGED;
  return dt == ATTN_DTYPE_BF16  ? ATTN_DEC_BF16
         : dt == ATTN_DTYPE_F16 ? ATTN_DEC_F16
                                : ATTN_DEC_F32;
}

/* Item: chunk c0 + kk of the units of kv heads g0 .. g0 + nh - 1 that
 * share u's rows (u is g0's); partials into their slots part[h]. */
static void run_chunk(const dec_job *job, const dec_unit *u, int nh, int64_t kk,
                      char *ws, float **part) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const dec_geo *g = &job->g;
  attn_dec_chunk c;
  c.nh = nh;
  c.rows = u->rows;
  c.d = pr->d;
  c.dv = pr->dv;
  c.dp = g->dp;
  c.dvp = g->dvp;
  float *q = (float *)(ws + g->q);
  attn_score *sc = (attn_score *)(ws + g->sc);
  const int64_t *qi = (const int64_t *)(ws + g->qi);
  for (int hh = 0; hh < nh; hh++)
    for (int r = 0; r < u->rows; r++) {
      const int64_t h = row_head(job, u, r) + hh * g->group;
      const void *qr = attn_elem(&p->q, u->sq.q_bat, qi[r], h, 0);
      if (job->qk_bf16) { /* raw bf16, d = dp (qk_bf16_applies) */
        uint16_t *row16 = (uint16_t *)q + (hh * u->rows + r) * g->dp;
        const int64_t st = p->q.stride[3];
        for (int64_t x = 0; x < pr->d; x++)
          row16[x] = ((const uint16_t *)qr)[x * st];
      } else {
        float *row = q + (hh * u->rows + r) * g->dp;
        attn_load_row_f32(qr, p->q.dtype, p->q.stride[3], pr->d, 1.0f, row);
        memset(row + pr->d, 0, sizeof(float) * (size_t)(g->dp - pr->d));
      }
      attn_score *x = &sc[hh * u->rows + r];
      attn_score_setup(p, &u->sq, &u->pos, h, x);
      x->t5 = job->t5;
    }
  c.q = q;
  c.qi = qi;
  c.lo = (const int64_t *)(ws + g->lo);
  c.hi = (const int64_t *)(ws + g->hi);
  c.sc = sc;
  const int64_t chunk = u->c0 + kk;
  c.ja = ATTN_MAX(chunk * ATTN_DECODE_CHUNK, u->jlo);
  c.jb = ATTN_MIN((chunk + 1) * ATTN_DECODE_CHUNK, u->jhi + 1);
  const void **kr = (const void **)(ws + g->krow);
  const void **vr = (const void **)(ws + g->vrow);
  const attn_kv_src *src = job->src;
  key_rows(src, u->sq.q_bat, u->g, c.ja, c.jb, kr, vr);
  c.krow = kr;
  c.vrow = vr;
  c.kstep = src->k.stride[2] * (int64_t)attn_dtype_size(src->k.dtype);
  c.vstep = src->v.stride[2] * (int64_t)attn_dtype_size(src->v.dtype);
  c.kdt = src->k.dtype;
  c.vdt = src->v.dtype;
  c.ks = src->k.stride[3];
  c.vs = src->v.stride[3];
  c.kmode = read_mode(c.kdt, c.ks, c.d, c.dp);
  c.vmode = read_mode(c.vdt, c.vs, c.dv, c.dvp);
  c.scale = pr->scale;
  c.qk = job->qk_bf16;
  c.pv = job->pv_bf16;
  c.qt = g->qt ? (uint32_t *)(ws + g->qt) : NULL;
  if (job->qk_bf16)
    c.kmode = ATTN_DEC_BF16DOT;
  if (job->pv_bf16)
    c.vmode = ATTN_DEC_BF16DOT;
  c.s = (float *)(ws + g->s);
  c.stage = (float *)(ws + g->stage);
  c.rowp = (const float **)(ws + g->rowp);
  c.lut = (float *)(ws + g->lut);
  const size_t per_chunk = (size_t)g->rows_max * (size_t)(g->dvp + 2);
  float **pp = (float **)(ws + g->part);
  for (int hh = 0; hh < nh; hh++)
    pp[hh] = part[hh] + (size_t)kk * per_chunk;
  c.part = pp;
  c.pstride = g->rows_max;
  job->k->chunk(&c);
}

/* Merges the unit's chunks (in chunk order) into o and lse. */
static void merge(const dec_job *job, const dec_unit *u, const float *part,
                  char *ws) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const dec_geo *g = &job->g;
  const size_t per_chunk = (size_t)g->rows_max * (size_t)(g->dvp + 2);
  const int64_t *qi = (const int64_t *)(ws + g->qi);
  float *acc = (float *)(ws + g->obuf);
  const int64_t rm = g->rows_max, dvp = g->dvp;
  for (int r = 0; r < u->rows; r++) {
    const int64_t h = row_head(job, u, r);
    float mx = -INFINITY;
    int nan = 0;
    for (int64_t kk = 0; kk < u->nc; kk++) {
      const float m = part[kk * per_chunk + r],
                  l = part[kk * per_chunk + rm + r];
      if (m > mx)
        mx = m;
      if (m != m || l != l)
        nan = 1;
    }
    float big_l = 0.0f;
    memset(acc, 0, sizeof(float) * (size_t)dvp);
    if (mx > -INFINITY) {
      for (int64_t kk = 0; kk < u->nc; kk++) {
        const float *pc = part + kk * per_chunk;
        const float m = pc[r];
        if (m == -INFINITY)
          continue; /* no key of this row in the chunk */
        const float w = m == mx ? 1.0f : exp2f((m - mx) * kLog2eDec);
        big_l += pc[rm + r] * w;
        const float *o = pc + 2 * rm + r * dvp;
        for (int64_t x = 0; x < dvp; x++)
          acc[x] += o[x] * w;
      }
    }
    if (nan)
      big_l = NAN;
    float a = 1.0f; /* the sink joins the sum, with no value */
    if (p->sinks && p->sinks[h] > -INFINITY)
      attn_sink_join(p->sinks[h], &mx, &big_l, &a);
    /* l = 0: the row saw no key (o = 0, lse = -inf); NaN: it saw a
     * non-finite score (o and lse NaN), as in the tiled kernel. */
    const float inv = big_l > 0 ? a / big_l : big_l == 0 ? 0.0f : NAN;
    for (int64_t x = 0; x < pr->dv; x++)
      acc[x] *= inv;
    attn_store_row(acc, pr->dv, attn_elem(&p->o, u->sq.q_bat, qi[r], h, 0),
                   p->o.dtype, p->o.stride[3]);
    if (p->lse)
      p->lse[(u->b * pr->hq + h) * u->sq.sq + qi[r]] = big_l > 0
                                                           ? mx + logf(big_l)
                                                       : big_l == 0 ? -INFINITY
                                                                    : NAN;
  }
}

/* Item: chunk kk of the units ui .. ui + nh - 1 (kv heads side by side,
 * the same rows); their slots part[0 .. nh). */
static void run_item(dec_job *job, int64_t ui, int nh, int64_t kk, char *ws,
                     float **part) {
  dec_unit u;
  unit_setup(job, ui, ws, &u);
  if (u.nc == 0) {
    for (int hh = 0; kk == 0 && hh < nh; hh++) {
      dec_unit v = u;
      v.g = u.g + hh;
      merge(job, &v, part[hh], ws); /* no key at all: o = 0, lse = -inf */
    }
    return;
  }
  if (kk >= u.nc)
    return;
  run_chunk(job, &u, nh, kk, ws, part);
  for (int hh = 0; hh < nh; hh++) {
    const int64_t n = atomic_fetch_add_explicit(&job->done[ui + hh], 1,
                                                memory_order_acq_rel) +
                      1;
    if (n == u.nc) {
      dec_unit v = u;
      v.g = u.g + hh;
      merge(job, &v, part[hh], ws);
    }
  }
}

/* Q K with bf16 dot products: bf16 q and k, as the forward decides
 * (docs/bf16.md), on an ISA whose table has them; k rows dense and a whole
 * number of vector pairs long (d = dp, a multiple of 2 VL), else the
 * kernel widens k as for an f32 q. */
static int qk_bf16_applies(const attn_plan *pl, const attn_kv_src *src,
                           const dec_geo *g) {
  const attn_params *p = &pl->p;
  return pl->k.dec_qk_bf16 && p->q.dtype == ATTN_DTYPE_BF16 &&
         src->k.dtype == ATTN_DTYPE_BF16 && src->k.stride[3] == 1 &&
         pl->pr.d == g->dp && g->dp % (2 * (int64_t)pl->k.dec->vl) == 0;
}

/* P V with bf16 dot products, P rounded to bf16: besides bf16 q and k,
 * bf16 v and a bf16 output (the forward's rule), v rows dense and a whole
 * number of vector pairs long. */
static int pv_bf16_applies(const attn_plan *pl, const attn_kv_src *src,
                           const dec_geo *g) {
  const attn_params *p = &pl->p;
  return pl->k.dec_pv_bf16 && src->v.dtype == ATTN_DTYPE_BF16 &&
         p->o.dtype == ATTN_DTYPE_BF16 && src->v.stride[3] == 1 &&
         pl->pr.dv == g->dvp && g->dvp % (2 * (int64_t)pl->k.dec->vl) == 0;
}

static void dec_worker(void *arg, attn_team *team, int tid, int nthreads) {
  (void)nthreads;
  dec_job *job = (dec_job *)arg;
  const dec_geo *g = &job->g;
  char *ws = job->scratch + (size_t)tid * g->per_thread;
  const int64_t hk = job->pr->hk;
  for (int64_t w = 0; w < g->nwaves; w++) {
    const int64_t g0 = w * g->wave, ng = ATTN_MIN(g->wave, g->groups - g0);
    const int64_t items = ng * g->nhb * g->nch;
    for (;;) {
      const int64_t it = atomic_fetch_add(&job->wave_ctr[w], 1);
      if (it >= items)
        break;
      /* item: (group, head block, chunk), chunks fastest */
      const int64_t gw = it / (g->nhb * g->nch), kk = it % g->nch;
      const int64_t h0 = it / g->nch % g->nhb * g->hb;
      const int nh = (int)(ATTN_MIN(h0 + g->hb, hk) - h0);
      float *part[ATTN_DEC_RB];
      for (int hh = 0; hh < nh; hh++)
        part[hh] =
            (float *)(job->slots + (size_t)(gw * hk + h0 + hh) * g->slot);
      run_item(job, (g0 + gw) * hk + h0, nh, kk, ws, part);
    }
    if (w + 1 < g->nwaves)
      attn_team_barrier(team); /* the slots are reused by the next wave */
  }
}

attn_status attn_decode_run(const attn_plan *pl, const attn_kv_src *src,
                            void *ws, size_t ws_size) {
  const attn_params *p = &pl->p;
  dec_job job;
  attn_status st = geometry(pl, &job.g);
  if (st != ATTN_OK)
    return attn_fail(p, st, "decode workspace size overflows");
  job.pl = pl;
  job.pr = &pl->pr;
  job.src = src;
  job.k = pl->k.dec;
  job.qk_bf16 = qk_bf16_applies(pl, src, &job.g) ? pl->k.dec_qk_bf16 : NULL;
  job.pv_bf16 = job.qk_bf16 && pv_bf16_applies(pl, src, &job.g)
                    ? pl->k.dec_pv_bf16
                    : NULL;
  job.t5 = p->rel_bias ? &pl->t5 : NULL; /* set up by attn_plan_prepare */
  void *mem = NULL;
  char *base;
  if (ws) {
    if (ws_size < job.g.total)
      return attn_fail(p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                       "workspace of %zu bytes, %zu needed", ws_size,
                       job.g.total);
    base = (char *)round_up((size_t)(uintptr_t)ws, ALIGN);
  } else {
    st = attn_workspace_acquire(pl->ctx, p, job.g.total, &mem, &base);
    if (st != ATTN_OK)
      return st;
  }
  job.wave_ctr = (atomic_llong *)base;
  job.done = job.wave_ctr + job.g.nwaves;
  for (int64_t i = 0; i < job.g.nwaves + job.g.units; i++)
    atomic_init(&job.wave_ctr[i], 0);
  job.slots = base + job.g.counters;
  job.scratch = job.slots + job.g.slot * (size_t)(job.g.wave * pl->pr.hk);
  st = attn_team_run_ctx(pl->ctx, job.g.threads, dec_worker, &job);
  attn_workspace_release(pl->ctx, mem);
  return st;
}

attn_status attn_decode_forward(const attn_plan *pl) {
  attn_kv_src src;
  src.k = pl->p.k;
  src.v = pl->p.v;
  src.page_size = 0;
  src.block_table = NULL;
  src.blocks_per_seq = 0;
  return attn_decode_run(pl, &src, NULL, 0);
}
