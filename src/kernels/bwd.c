/* The portable backward framework: validation, workspace, threads, the
 * f32 copies of Q and dO, and the deterministic split of the work. The
 * O(seq_q x seq_k) work happens in the per-ISA block kernel (bwd_kernels.h).
 *
 * FlashAttention-2's backward (Dao 2023, Algorithm 2) with no floating-point
 * atomics. Four phases, one team of threads, barriers between phases:
 *
 *   0  per (query head, row block): Q and dO in f32 (padded
 *      to the vector width), D = rowsum(dO * O), lse * log2(e); zeros for
 *      gradient rows no key/query ever reaches (kv_lens padding, rows past
 *      the last cu_seqlens).
 *   A  items (sequence, kv head, key chunk): the keys of a sequence are cut
 *      into at most ATTN_BWD_CHUNKS chunks of whole key tiles (a number that
 *      depends on the sequence length, the kv head count and the machine's
 *      CPU count only, never on the call's thread count: seq_chunks).
 *      For each key tile of its chunk the item loops, in a fixed order, over
 *      the query heads of the group and all query tiles: dK and dV of the
 *      tile are complete when it finishes (written out directly), and the
 *      item's share of dQ goes to its own partial buffer dQc[chunk]. With
 *      long keys it takes up to four key tiles per pass over the query
 *      tiles (key_tiles_per_pass), each tile's sums in the same order.
 *   C  (only with dbias) items (bias batch, bias head, bias row tile): the
 *      item recomputes dS for every (sequence, head, row) that its dbias
 *      elements sum over, in a fixed order, and accumulates into dbias.
 *   B  per (sequence, kv head): dQ of the group's query heads = scale *
 *      sum over the chunks, in chunk order, of dQc; run by the thread that
 *      finishes the last phase-A item of the pair, while the others go on
 *      with phase A (after the barrier only sequences without keys remain:
 *      their dQ is 0).
 *
 * Items are claimed from shared counters, so which thread does an item
 * varies; what an item computes, and in which order, does not: results are
 * bitwise identical for every thread count (on one machine: the chunks
 * follow its CPU count, as the kernels follow its ISA).
 *
 * Memory: Q and dO once in f32, ATTN_BWD_CHUNKS f32 copies of dQ at most,
 * a few hundred KiB of tiles per thread (about 1 MiB with long keys) and, for
 * the bf16 kernel, each thread's bf16 query tiles (at most the size of the f32
 * Q and dO, or 16 MiB in all): linear in the sequence lengths, nothing of size
 * seq_q x seq_k.
 */
#include "kernels/bwd_job.h"
#include "kernels/sparse_split.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64

/* Whether the call takes the bf16 kernel (docs/bf16.md): bf16 Q and K and
 * a table that has one, the forward's own condition, so that S is
 * recomputed with the forward's arithmetic (bf16 dot products): with f32
 * dot products here, P differed from the forward's in the last bits of S,
 * and D = rowsum(dO o O) from it, an error dQ multiplies by the keys'
 * mean (fuzz/RESULTS.md, finding 1). dP takes bf16 dot products only when
 * V and dO are bf16 too (dp16). */
static int use_bf16(const attn_plan *pl) {
  return pl->k.bwd_bf16 && attn_plan_bf16(pl);
}

/* Key tiles a phase-A item runs per pass over its query tiles. Each pass
 * streams the query tiles' Q, dO (or their bf16 copies), D, lse and dQ
 * partials through the caches once; with long sequences that is several
 * MiB a thread per key tile, more than L2 holds, and the bf16 backward ran
 * 35% slower per FLOP at 16K keys than at 4K on Zen 4 (the f32 one 8%).
 * Four key tiles per pass quarter that traffic (bf16 at 16K 9-23% faster
 * than one and 9% faster than two, f32 5%; docs/decisions.md), for three
 * more key slots a thread (about 0.25 MiB each at d 64). The bits do not
 * change: each key tile's dK and dV still sum its blocks in query-tile
 * order, each query tile's dQ partial its key tiles in key order.
 * drel_bias sums the blocks of all key tiles into one partial per head,
 * in block order, so it keeps one key tile a pass. */
#ifndef BWD_KEY_TILES
#define BWD_KEY_TILES 4
#endif
#ifndef BWD_KEY_TILES_MIN_KEYS
#define BWD_KEY_TILES_MIN_KEYS 8192
#endif
static int key_tiles_per_pass(const attn_problem *pr, const attn_params *p) {
  if (p->drel_bias || pr->sk_max < BWD_KEY_TILES_MIN_KEYS)
    return 1;
  return BWD_KEY_TILES;
}

static attn_status layout(const attn_plan *pl, bwd_layout *w) {
  const attn_problem *pr = &pl->pr;
  const attn_bwd_kernel *k = pl->k.bwd;
  const attn_params *p = pr->p;
  const size_t br = (size_t)k->br, bc = (size_t)k->bc;
  w->tq = p->q.shape[0] * p->q.shape[1];
  w->tqp = w->tq + k->br;
  w->dp = (int64_t)round_up((size_t)pr->d, (size_t)k->vl);
  w->dvp = (int64_t)round_up((size_t)pr->dv, (size_t)k->vl);
  w->chunks = 1;
  w->aim = ATTN_BWD_ITEMS(attn_cpu_count());
  w->nqt_max = 1;
  int64_t items_a = 0;
  for (int64_t b = 0; b < pr->batch; b++) {
    attn_seq sq;
    attn_problem_seq(pr, b, &sq);
    const int64_t c = sq.sq > 0 ? seq_chunks(sq.sk, k->bc, pr->hk, w->aim) : 0;
    w->chunks = ATTN_MAX(w->chunks, c);
    w->nqt_max = ATTN_MAX(w->nqt_max, cdiv(sq.sq, k->br));
    items_a += c * pr->hk;
  }
  w->items_a = items_a;
  w->items_c = 0;
  if (p->dbias.data) {
    const int64_t *sh = p->dbias.shape;
    w->items_c = sh[0] * sh[1] * (sh[2] == 1 ? 1 : cdiv(sh[2], k->br));
  }
  /* shared pieces */
  attn_ws sh = {0, 0};
  const size_t rows = attn_ws_mul(&sh, (size_t)pr->hq, (size_t)w->tqp);
  w->qs =
      attn_ws_add(&sh, attn_ws_mul(&sh, rows, (size_t)w->dp), sizeof(float));
  w->dos =
      attn_ws_add(&sh, attn_ws_mul(&sh, rows, (size_t)w->dvp), sizeof(float));
  w->l2 = attn_ws_add(&sh, rows, sizeof(float));
  w->dd = attn_ws_add(&sh, rows, sizeof(float));
  const size_t dqc = attn_ws_mul(
      &sh, attn_ws_mul(&sh, (size_t)w->chunks * (size_t)pr->hq, (size_t)w->tq),
      (size_t)w->dp);
  w->dqc = attn_ws_add(&sh, dqc, sizeof(float));
  w->dqf = attn_ws_add(
      &sh, attn_ws_mul(&sh, (size_t)w->chunks * (size_t)pr->hq, (size_t)w->tq),
      1);
  w->base = attn_ws_add(&sh, (size_t)pr->batch + 1, sizeof(int64_t));
  w->done =
      attn_ws_add(&sh, attn_ws_mul(&sh, (size_t)pr->batch, (size_t)pr->hk),
                  sizeof(atomic_llong));
  const size_t nrel = p->drel_bias ? (size_t)p->rel_buckets : 0;
  w->rel = attn_ws_add(
      &sh,
      attn_ws_mul(&sh, attn_ws_mul(&sh, (size_t)items_a, (size_t)pr->group),
                  nrel),
      sizeof(float));
  w->tiles = attn_ws_add(&sh, pl->tiles_bytes, 1);
  if (sh.overflow)
    return ATTN_ERR_OVERFLOW;
  size_t off = sh.off;
  w->scratch = off;
  /* one thread's tiles (all small: head dims are at most 256) */
  attn_ws t = {0, 0};
  const size_t dp = (size_t)w->dp, dvp = (size_t)w->dvp, bcp = bc + KEY_PAD;
  w->kt = attn_ws_add(&t, bc * (size_t)pr->d, sizeof(float));
  w->vt = attn_ws_add(&t, bc * (size_t)pr->dv, sizeof(float));
  w->krow = attn_ws_add(&t, bc * dp, sizeof(float));
  w->dk = attn_ws_add(&t, bcp * dp, sizeof(float));
  w->dv = attn_ws_add(&t, bcp * dvp, sizeof(float));
  w->dkm = attn_ws_add(&t, bcp * dp, sizeof(float));
  w->dvm = attn_ws_add(&t, bcp * dvp, sizeof(float));
  w->s = attn_ws_add(&t, br * bc + KEY_PAD, sizeof(float));
  w->ds = attn_ws_add(&t, br * bc + KEY_PAD, sizeof(float));
  w->g = attn_ws_add(&t, br * bc + KEY_PAD, sizeof(float));
  w->z = attn_ws_add(&t, p->dropout_p > 0.0f ? br * bc + KEY_PAD : 0,
                     sizeof(float));
  w->gm = attn_ws_add(&t, p->score_mod ? br * bc + KEY_PAD : 0, sizeof(float));
  w->bf =
      attn_ws_add(&t, use_bf16(pl) ? ATTN_BWD_BF16_SCRATCH(br, bc, dp, dvp) : 0,
                  sizeof(uint16_t));
  w->lo = attn_ws_add(&t, br, sizeof(int64_t));
  w->hi = attn_ws_add(&t, br, sizeof(int64_t));
  w->tmp = attn_ws_add(&t, ATTN_MAX_HEAD_DIM, sizeof(float));
  w->dt5 = attn_ws_add(&t, br + bc, sizeof(float));
  /* Everything above is one key tile's (the key slot); a phase-A item
   * with long keys runs BWD_KEY_TILES of them per pass over its query
   * tiles (key_tiles_per_pass), each in its own slot. */
  w->kslot = round_up(t.off, ALIGN);
  w->kp = key_tiles_per_pass(pr, p);
  t.off = w->kslot;
  attn_ws_add(&t, attn_ws_mul(&t, w->kslot, (size_t)(w->kp - 1)), 1);
  w->touched = attn_ws_add(
      &t, attn_ws_mul(&t, (size_t)pr->group, (size_t)w->nqt_max), 1);
  if (t.overflow)
    return ATTN_ERR_OVERFLOW;

  int nt = pl->threads;
  const int64_t most = ATTN_MAX(ATTN_MAX(items_a, w->items_c), 1);
  if (most < nt)
    nt = (int)most;
  w->threads = ATTN_MIN(nt, ATTN_MAX_THREADS);
  /* The bf16 kernel's query tiles in bf16, kept per phase-A item (a
   * thread's): where all threads' copies take at most as much as the f32
   * copies of Q and dO (or 16 MiB), else each block converts its own. */
  attn_ws rc = t;
  const size_t slot = ATTN_BWD_ROWS16(br, dp, dvp) * sizeof(uint16_t);
  const size_t nslot = (size_t)pr->group * (size_t)w->nqt_max;
  w->rows16 = attn_ws_add(&rc, nslot, slot);
  size_t cap = w->l2 - w->qs, need = 0; /* qs and dos */
  w->rows16_on =
      use_bf16(pl) && !rc.overflow &&
      !__builtin_mul_overflow(rc.off - t.off, (size_t)w->threads, &need) &&
      need <= ATTN_MAX(cap, (size_t)16 << 20);
  if (w->rows16_on)
    t = rc;
  w->per_thread = t.off;
  size_t all;
  if (__builtin_mul_overflow(t.off, (size_t)w->threads, &all) ||
      __builtin_add_overflow(all, off, &all) ||
      __builtin_add_overflow(all, (size_t)ALIGN, &all))
    return ATTN_ERR_OVERFLOW;
  w->total = all;
  return ATTN_OK;
}

static void zero_rows(const attn_tensor *t, int64_t bat, int64_t r0, int64_t r1,
                      int64_t h, float *zeros) {
  for (int64_t r = r0; r < r1; r++)
    attn_store_row(zeros, t->shape[3], attn_elem(t, bat, r, h, 0), t->dtype,
                   t->stride[3]);
}

/* ---------------------------------------------------------------------- */
/* Phase 0: f32 copies, D, lse, zeros                                      */
/* ---------------------------------------------------------------------- */
static void phase0(bwd_job *job, int tid, int nthreads) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const bwd_layout *w = &job->w;
  const int64_t s0 = p->q.shape[1], d = pr->d, dv = pr->dv;
  const int64_t dp = w->dp, dvp = w->dvp, br = job->k->br;
  char *ws = job->mem + w->scratch + (size_t)tid * w->per_thread;
  /* O's rows of a block: the dV accumulators are free during this phase */
  float *obuf = (float *)(ws + w->dv);
  /* D in dP's arithmetic: the f32 kernel's when dP has f32 products */
  void (*const dot)(const float *, int64_t, const float *, int64_t, int64_t,
                    int64_t, float *) =
      job->bf16 && !use_dp16(p) ? job->pl->k.bwd->row_dot : job->k->row_dot;
  const int64_t blocks = cdiv(w->tqp, br);
  const int64_t vr0 = pr->varlen ? p->cu_seqlens_q[0] : 0;
  const int64_t vr1 = pr->varlen ? p->cu_seqlens_q[pr->batch] : w->tq;
  int64_t it = 0;
  for (int64_t h = 0; h < pr->hq; h++)
    for (int64_t blk = 0; blk < blocks; blk++, it++) {
      if (it % nthreads != tid)
        continue;
      const int64_t r0 = blk * br, r1 = ATTN_MIN(w->tqp, (blk + 1) * br);
      /* the block's live rows, an interval: [ra, rb) */
      const int64_t ra = ATTN_MAX(r0, vr0),
                    rb = ATTN_MIN(r1, ATTN_MIN(w->tq, vr1));
      for (int64_t r = r0; r < r1; r++) {
        float *q = job->qs + (h * w->tqp + r) * dp;
        float *o = job->dos + (h * w->tqp + r) * dvp;
        const int64_t li = h * w->tqp + r;
        if (r < ra || r >= rb) {
          memset(q, 0, sizeof(float) * (size_t)dp);
          memset(o, 0, sizeof(float) * (size_t)dvp);
          job->l2[li] = -INFINITY;
          job->dd[li] = 0.0f;
          continue;
        }
        const int64_t rp = r + ATTN_PREFETCH_ROWS;
        if (rp < rb) {
          attn_prefetch_elem(&p->q, rp / s0, rp % s0, h, d, 0);
          attn_prefetch_elem(&p->dout, rp / s0, rp % s0, h, dv, 0);
          attn_prefetch_elem(&p->o, rp / s0, rp % s0, h, dv, 0);
        }
        const int64_t tb = r / s0, i = r % s0;
        attn_load_row_poison(attn_elem(&p->q, tb, i, h, 0), p->q.dtype,
                             p->q.stride[3], d, 1.0f, q);
        memset(q + d, 0, sizeof(float) * (size_t)(dp - d));
        attn_load_row_f32(attn_elem(&p->dout, tb, i, h, 0), p->dout.dtype,
                          p->dout.stride[3], dv, 1.0f, o);
        memset(o + dv, 0, sizeof(float) * (size_t)(dvp - dv));
        attn_load_row_f32(attn_elem(&p->o, tb, i, h, 0), p->o.dtype,
                          p->o.stride[3], dv, 1.0f, obuf + (r - ra) * dvp);
        const float lse = pr->varlen ? p->lse[h * s0 + r]
                                     : p->lse[(tb * pr->hq + h) * s0 + i];
        job->l2[li] = lse;
      }
      if (ra < rb) /* D = rowsum(dO O), dP's arithmetic */
        dot(job->dos + (h * w->tqp + ra) * dvp, dvp, obuf, dvp, dv, rb - ra,
            job->dd + h * w->tqp + ra);
    }
  /* Gradient rows no query or key reaches: zero, one head per thread. */
  float *zeros = (float *)(ws + w->dk);
  memset(zeros, 0, sizeof(float) * (size_t)ATTN_MAX(dp, dvp));
  for (int64_t g = tid; g < pr->hk; g += nthreads) {
    for (int64_t b = 0; b < pr->batch; b++) {
      attn_seq sq;
      attn_problem_seq(pr, b, &sq);
      const int64_t cap =
          pr->varlen ? (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b]
                     : p->k.shape[1];
      /* no query: every key's gradient is 0 */
      const int64_t from = sq.k_off + (sq.sq > 0 ? sq.sk : 0);
      zero_rows(&p->dk, sq.q_bat, from, sq.k_off + cap, g, zeros);
      zero_rows(&p->dv, sq.q_bat, from, sq.k_off + cap, g, zeros);
    }
    if (pr->varlen) {
      zero_rows(&p->dk, 0, p->cu_seqlens_k[pr->batch], p->k.shape[1], g, zeros);
      zero_rows(&p->dv, 0, p->cu_seqlens_k[pr->batch], p->k.shape[1], g, zeros);
    }
  }
  if (pr->varlen)
    for (int64_t h = tid; h < pr->hq; h += nthreads) {
      zero_rows(&p->dq, 0, 0, p->cu_seqlens_q[0], h, zeros);
      zero_rows(&p->dq, 0, p->cu_seqlens_q[pr->batch], p->q.shape[1], h, zeros);
    }
}

/* ---------------------------------------------------------------------- */
/* Phase A: dK, dV and the dQ partials                                     */
/* ---------------------------------------------------------------------- */

/* Adds a block's per-distance sums of dS (dt5, bwd_kernels.h) into the
 * buckets of its head (part: [buckets]), distances in increasing order.
 * Distances past the last real key hold only padding (dS = 0): skipped. */
static void rel_scatter(const attn_bblock *t, const float *dt5, float *part) {
  const attn_t5 *t5 = t->sc.t5;
  const int64_t rel0 = t->j0 - (t->i0 + t->rows - 1) - t->sc.qk;
  for (int u = 0; u < t->rows - 1 + t->nkeys; u++)
    part[attn_t5_lookup(t5, rel0 + u)] += dt5[u];
}

static void phase_a_item(bwd_job *job, int64_t b, int64_t g, int64_t c,
                         char *ws, int *tiles_on) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const attn_bwd_kernel *k = job->k;
  const bwd_layout *w = &job->w;
  const int64_t dp = w->dp, dvp = w->dvp;
  attn_seq sq;
  attn_problem_seq(pr, b, &sq);
  const int64_t nkt = cdiv(sq.sk, k->bc), nqt = cdiv(sq.sq, k->br);
  const int64_t nch = seq_chunks(sq.sk, k->bc, pr->hk, w->aim),
                tpc = cdiv(nkt, nch);
  const int64_t r0 = seq_row0(p, &sq);
  /* The item's dQ partial rows are zeroed a query tile at a time, just
   * before the first block that adds to them (while they are about to be
   * in cache), and flagged in dqf; tiles no block reached (under a causal
   * mask, those above the chunk's keys) are neither zeroed nor summed. */
  uint8_t *touched = (uint8_t *)(ws + w->touched);
  memset(touched, 0, (size_t)(pr->group * nqt));
  for (int64_t hh = 0; hh < pr->group; hh++)
    memset(job->dqf + (c * pr->hq + g * pr->group + hh) * w->tq + r0, 0,
           (size_t)sq.sq);
  /* drel_bias: this item's own partial sums, [group][buckets] */
  const int64_t nb = p->drel_bias ? p->rel_buckets : 0;
  float *rel = job->rel + (job->item_base[b] + c * pr->hk + g) * pr->group * nb;
  memset(rel, 0, sizeof(float) * (size_t)(pr->group * nb));
  float *dt5 = (float *)(ws + w->dt5);
  uint16_t *rowbuf = (uint16_t *)(ws + w->rows16);
  const size_t slot = ATTN_BWD_ROWS16(k->br, dp, dvp);
  const int64_t kt_end = ATTN_MIN(nkt, (c + 1) * tpc);
  for (int64_t kt0 = c * tpc; kt0 < kt_end; kt0 += w->kp) {
    /* key tiles kt0 .. kt0 + nu - 1, tile u in key slot u */
    const int nu = (int)ATTN_MIN((int64_t)w->kp, kt_end - kt0);
    int64_t j0[BWD_KEY_TILES];
    int nkeys[BWD_KEY_TILES];
    size_t nk[BWD_KEY_TILES], nv[BWD_KEY_TILES];
    for (int u = 0; u < nu; u++) {
      char *wu = ws + (size_t)u * w->kslot;
      j0[u] = (kt0 + u) * k->bc;
      nkeys[u] = (int)ATTN_MIN((int64_t)k->bc, sq.sk - j0[u]);
      attn_bwd_pack_keys(job, &sq, g, j0[u], nkeys[u], wu);
      if (k->prep_keys) { /* the bf16 kernel's keys, once for the tile */
        attn_bblock kb;
        memset(&kb, 0, sizeof kb);
        kb.nkeys = nkeys[u], kb.d = pr->d, kb.dv = pr->dv, kb.dp = dp;
        kb.dvp = dvp;
        kb.kt = (const float *)(wu + w->kt);
        kb.vt = (const float *)(wu + w->vt);
        kb.krow = (const float *)(wu + w->krow);
        kb.bf = (uint16_t *)(wu + w->bf);
        k->prep_keys(&kb);
      }
      nk[u] = attn_bwd_acc_rows(k, nkeys[u]) * (size_t)dp;
      nv[u] = attn_bwd_acc_rows(k, nkeys[u]) * (size_t)dvp;
      memset(wu + w->dk, 0, sizeof(float) * nk[u]);
      memset(wu + w->dv, 0, sizeof(float) * nv[u]);
    }
    /* Three levels for accuracy with many query heads per kv head: a
     * block's sum (in the kernel), a head's (dkm, dvm), all heads'. */
    for (int64_t hh = 0; hh < pr->group; hh++) {
      const int64_t h = g * pr->group + hh;
      if (hh > 0)
        for (int u = 0; u < nu; u++) {
          char *wu = ws + (size_t)u * w->kslot;
          memset(wu + w->dkm, 0, sizeof(float) * nk[u]);
          memset(wu + w->dvm, 0, sizeof(float) * nv[u]);
        }
      for (int64_t qt = 0; qt < nqt; qt++) {
        const int64_t i0 = qt * k->br;
        const int rows = (int)ATTN_MIN((int64_t)k->br, sq.sq - i0);
        for (int u = 0; u < nu; u++) {
          char *wu = ws + (size_t)u * w->kslot;
          attn_bblock t;
          if (!attn_bwd_block_setup(job, &sq, h, i0, rows, j0[u], nkeys[u], wu,
                                    &t))
            continue;
          /* the first head sums straight into dk, dv (0 + x = x) */
          t.dk = (float *)(wu + (hh == 0 ? w->dk : w->dkm));
          t.dvacc = (float *)(wu + (hh == 0 ? w->dv : w->dvm));
          t.keys_bf16 = k->prep_keys != NULL;
          t.tiles_on = tiles_on;
          t.dq = job->dqc + ((c * pr->hq + h) * w->tq + r0 + i0) * dp;
          t.rows16 = w->rows16_on ? rowbuf + (hh * nqt + qt) * slot : NULL;
          if (!touched[hh * nqt + qt]) {
            touched[hh * nqt + qt] = 1;
            if (t.rows16) /* the tile's Q and dO in bf16, for all blocks */
              k->prep_rows(&t, (uint16_t *)t.rows16);
            memset(t.dq, 0, sizeof(float) * (size_t)(rows * dp));
            memset(job->dqf + (c * pr->hq + h) * w->tq + r0 + i0, 1,
                   (size_t)rows);
          }
          t.dt5 = nb ? dt5 : NULL;
          k->block(&t);
          if (nb)
            rel_scatter(&t, dt5, rel + hh * nb);
        }
      }
      if (hh == 0)
        continue;
      for (int u = 0; u < nu; u++) {
        char *wu = ws + (size_t)u * w->kslot;
        float *dk = (float *)(wu + w->dk), *dv = (float *)(wu + w->dv);
        const float *dkm = (const float *)(wu + w->dkm);
        const float *dvm = (const float *)(wu + w->dvm);
        for (size_t e = 0; e < nk[u]; e++)
          dk[e] += dkm[e];
        for (size_t e = 0; e < nv[u]; e++)
          dv[e] += dvm[e];
      }
    }
    for (int u = 0; u < nu; u++) {
      char *wu = ws + (size_t)u * w->kslot;
      float *dk = (float *)(wu + w->dk), *dv = (float *)(wu + w->dv);
      for (size_t e = 0; e < (size_t)nkeys[u] * (size_t)dp; e++)
        dk[e] *= pr->scale; /* Q is unscaled: S = scale (Q Kᵀ) */
      for (int r = 0; r < nkeys[u]; r++) {
        const int64_t j = sq.k_off + j0[u] + r;
        if (r + ATTN_PREFETCH_ROWS < nkeys[u]) {
          attn_prefetch_elem(&p->dk, sq.q_bat, j + ATTN_PREFETCH_ROWS, g, pr->d,
                             1);
          attn_prefetch_elem(&p->dv, sq.q_bat, j + ATTN_PREFETCH_ROWS, g,
                             pr->dv, 1);
        }
        attn_store_row(dk + r * dp, pr->d, attn_elem(&p->dk, sq.q_bat, j, g, 0),
                       p->dk.dtype, p->dk.stride[3]);
        attn_store_row(dv + r * dvp, pr->dv,
                       attn_elem(&p->dv, sq.q_bat, j, g, 0), p->dv.dtype,
                       p->dv.stride[3]);
      }
    }
  }
}

static void phase_a(bwd_job *job, int tid) {
  const attn_problem *pr = job->pr;
  char *ws = job->mem + job->w.scratch + (size_t)tid * job->w.per_thread;
  int64_t b = 0;
  int tiles_on = 0; /* the AMX kernel's tiles, configured once (bblock) */
  for (;;) {
    const int64_t it = atomic_fetch_add(&job->counter_a, 1);
    if (it >= job->item_base[pr->batch])
      break;
    while (it >= job->item_base[b + 1])
      b++; /* items are claimed in increasing order */
    const int64_t local = it - job->item_base[b];
    const int64_t nch = (job->item_base[b + 1] - job->item_base[b]) / pr->hk;
    /* head-major: a kv head's chunks finish together, so its dQ sum
     * (attn_bwd_group_done) overlaps the other heads' items; within a head the
     * first chunks (the most work under causal masks) start first */
    phase_a_item(job, b, local / nch, local % nch, ws, &tiles_on);
    attn_bwd_group_done(job, b, local / nch, nch, ws);
  }
  if (tiles_on && job->k->tiles_done)
    job->k->tiles_done();
}

/* ---------------------------------------------------------------------- */
/* Phase C: dbias                                                          */
/* ---------------------------------------------------------------------- */
static void phase_c_item(bwd_job *job, int64_t it, char *ws) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const attn_bwd_kernel *k = job->k;
  const attn_tensor *db = &p->dbias;
  const int64_t *sh = db->shape;
  const int64_t nrt = sh[2] == 1 ? 1 : cdiv(sh[2], k->br);
  const int64_t rt = it % nrt, ih = it / nrt % sh[1], ib = it / nrt / sh[1];
  const int64_t row_lo = sh[2] == 1 ? 0 : rt * k->br;
  const int64_t row_hi = sh[2] == 1 ? 1 : ATTN_MIN(sh[2], row_lo + k->br);
  for (int64_t r = row_lo; r < row_hi; r++)
    for (int64_t c = 0; c < sh[3]; c++)
      *(float *)attn_elem(db, ib, ih, r, c) = 0.0f;
  const int64_t b_lo = sh[0] == 1 ? 0 : ib;
  const int64_t b_hi = sh[0] == 1 ? pr->batch : ib + 1;
  const int64_t h_lo = sh[1] == 1 ? 0 : ih, h_hi = sh[1] == 1 ? pr->hq : ih + 1;
  for (int64_t b = b_lo; b < b_hi; b++) {
    attn_seq sq;
    attn_problem_seq(pr, b, &sq);
    if (sq.sq == 0 || sq.sk == 0)
      continue;
    const int64_t nkt = cdiv(sq.sk, k->bc), nqt = cdiv(sq.sq, k->br);
    const int64_t qt_lo = sh[2] == 1 ? 0 : rt;
    const int64_t qt_hi = sh[2] == 1 ? nqt : ATTN_MIN(nqt, rt + 1);
    for (int64_t h = h_lo; h < h_hi; h++)
      for (int64_t qt = qt_lo; qt < qt_hi; qt++) {
        const int64_t i0 = qt * k->br;
        const int rows = (int)ATTN_MIN((int64_t)k->br, sq.sq - i0);
        for (int64_t kt = 0; kt < nkt; kt++) {
          const int64_t j0 = kt * k->bc;
          const int nkeys = (int)ATTN_MIN((int64_t)k->bc, sq.sk - j0);
          attn_bblock t;
          if (!attn_bwd_block_setup(job, &sq, h, i0, rows, j0, nkeys, ws, &t))
            continue;
          attn_bwd_pack_keys(job, &sq, h / pr->group, j0, nkeys, ws);
          k->block(&t);
          for (int r = 0; r < rows; r++) {
            const float *x = t.ds + r * k->bc;
            const int64_t br = sh[2] == 1 ? 0 : i0 + r;
            if (sh[3] == 1) {
              float *e = (float *)attn_elem(db, ib, ih, br, 0);
              float acc = *e;
              for (int c = 0; c < nkeys; c++)
                acc += x[c];
              *e = acc;
            } else {
              float *e = (float *)attn_elem(db, ib, ih, br, j0);
              for (int c = 0; c < nkeys; c++)
                e[c * db->stride[3]] += x[c];
            }
          }
        }
      }
  }
}

static void phase_c(bwd_job *job, int tid) {
  char *ws = job->mem + job->w.scratch + (size_t)tid * job->w.per_thread;
  for (;;) {
    const int64_t it = atomic_fetch_add(&job->counter_c, 1);
    if (it >= job->w.items_c)
      break;
    phase_c_item(job, it, ws);
  }
}

static void bwd_worker(void *arg, attn_team *team, int tid, int nthreads) {
  bwd_job *job = (bwd_job *)arg;
  if (job->tiles == &job->own) /* compile the mask: slots split by tid */
    attn_tiles_fill(&job->own, job->pr, tid, nthreads);
  phase0(job, tid, nthreads);
  attn_team_barrier(team);
  phase_a(job, tid);
  if (job->w.items_c)
    phase_c(job, tid);
  attn_team_barrier(team);
  attn_bwd_phase_b(job, tid, nthreads);
  if (job->pr->p->drel_bias)
    attn_bwd_phase_rel(job, tid, nthreads);
  if (job->pr->p->dsinks)
    attn_bwd_phase_sinks(job, tid, nthreads);
}

/* ---------------------------------------------------------------------- */
/* Entry points                                                            */
/* ---------------------------------------------------------------------- */
static attn_status prepare(attn_context *ctx, const attn_params *user,
                           size_t size, attn_plan *pl, bwd_layout *w) {
  attn_status st = attn_plan_prepare(ctx, user, size, ATTN_PASS_BWD, pl);
  if (st != ATTN_OK)
    return st;
  st = layout(pl, w);
  if (st != ATTN_OK)
    return attn_fail(&pl->p, st, "workspace size overflows");
  return ATTN_OK;
}

attn_status attn_backward_check_sized(const attn_params *user, size_t size) {
  attn_plan pl;
  return attn_plan_prepare(NULL, user, size, ATTN_PASS_BWD, &pl);
}

attn_status attn_backward_workspace_size_sized(attn_context *ctx,
                                               const attn_params *user,
                                               size_t size, size_t *bytes) {
  attn_plan pl;
  bwd_layout w;
  attn_status st = prepare(ctx, user, size, &pl, &w);
  if (st != ATTN_OK)
    return st;
  if (!bytes)
    return attn_fail(&pl.p, ATTN_ERR_NULL_POINTER, "bytes is NULL");
  if (attn_split_eligible(&pl)) /* Child et al.'s patterns: sparse_split.c */
    return attn_split_workspace_size(&pl, 1, bytes);
  *bytes = w.total;
  return ATTN_OK;
}

attn_status attn_backward_sized(attn_context *ctx, const attn_params *user,
                                size_t size) {
  attn_plan pl;
  bwd_job job;
  attn_status st = prepare(ctx, user, size, &pl, &job.w);
  if (st != ATTN_OK)
    return st;
  if (attn_split_eligible(&pl)) /* Child et al.'s patterns: sparse_split.c */
    return attn_split_backward(&pl);
  job.pl = &pl;
  job.pr = &pl.pr;
  job.bf16 = use_bf16(&pl);
  job.k = job.bf16 ? pl.k.bwd_bf16 : pl.k.bwd;
  atomic_init(&job.counter_a, 0);
  atomic_init(&job.counter_c, 0);
  void *mem;
  char *base;
  st = attn_workspace_acquire(pl.ctx, &pl.p, job.w.total, &mem, &base);
  if (st != ATTN_OK)
    return st;
  job.mem = base;
  job.qs = (float *)(base + job.w.qs);
  job.dos = (float *)(base + job.w.dos);
  job.l2 = (float *)(base + job.w.l2);
  job.dd = (float *)(base + job.w.dd);
  job.dqc = (float *)(base + job.w.dqc);
  job.dqf = (uint8_t *)(base + job.w.dqf);
  job.item_base = (int64_t *)(base + job.w.base);
  job.done = (atomic_llong *)(base + job.w.done);
  job.overlap_b = pl.pr.batch * pl.pr.hk >= job.w.threads;
  for (int64_t i = 0; i < pl.pr.batch * pl.pr.hk; i++)
    atomic_init(&job.done[i], 0);
  job.rel = (float *)(base + job.w.rel);
  job.tiles = pl.compiled;
  if (!job.tiles) {
    job.own = pl.tiles;
    attn_tiles_attach(&job.own, &pl.pr, base + job.w.tiles);
    job.tiles = &job.own;
  }
  job.item_base[0] = 0;
  for (int64_t b = 0; b < pl.pr.batch; b++) {
    attn_seq sq;
    attn_problem_seq(&pl.pr, b, &sq);
    const int64_t c =
        sq.sq > 0 ? seq_chunks(sq.sk, job.k->bc, pl.pr.hk, job.w.aim) : 0;
    job.item_base[b + 1] = job.item_base[b] + c * pl.pr.hk;
  }
  st = attn_team_run_ctx(pl.ctx, job.w.threads, bwd_worker, &job);
  attn_workspace_release(pl.ctx, mem);
  return st;
}

/* The 0.1 entry points (attn.h, "ABI"). */
attn_status attn_backward_check(const attn_params *p) {
  return attn_backward_check_sized(p, ATTN_PARAMS_SIZE_0_1);
}
attn_status attn_backward_workspace_size(attn_context *ctx,
                                         const attn_params *p, size_t *bytes) {
  return attn_backward_workspace_size_sized(ctx, p, ATTN_PARAMS_SIZE_0_1,
                                            bytes);
}
attn_status attn_backward(attn_context *ctx, const attn_params *p) {
  return attn_backward_sized(ctx, p, ATTN_PARAMS_SIZE_0_1);
}
