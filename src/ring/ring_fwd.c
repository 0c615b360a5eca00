/*
 * ring_fwd.c - attn_ring_forward: K/V slices travel round the ring
 * (MPI_Isend/Irecv of the next slice posted before the current pair is
 * computed); each visible (query chunk, key chunk) pair is one
 * attn_forward into an f32 partial, merged by LSE (attn_merge) into this
 * rank's f32 accumulator; the result is rounded to o's dtype once, at the
 * end.
 */
#include "ring_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fwd_bufs {
  char *blob[2];              /* K then V of one slice, in their dtypes */
  float *acc_o[2], *acc_l[2]; /* per query segment                   */
  float *tmp_o, *tmp_l;       /* one pair's partial                     */
  float *alt_o, *alt_l;       /* the merge's output, swapped with acc   */
  void *ws;
  size_t ws_size;
  ring_pair_arrays arr;
  size_t bytes;
} fwd_bufs;

static void *track(fwd_bufs *b, size_t n) {
  b->bytes += n;
  return calloc(n ? n : 1, 1);
}

static void fwd_bufs_free(fwd_bufs *b) {
  for (int i = 0; i < 2; i++) {
    free(b->blob[i]);
    free(b->acc_o[i]);
    free(b->acc_l[i]);
  }
  free(b->tmp_o);
  free(b->tmp_l);
  free(b->alt_o);
  free(b->alt_l);
  free(b->ws);
  ring_pair_arrays_free(&b->arr);
}

/* Pair call parameters for query segment qs of this rank against key
 * segment ks of rank s whose slice (n rows) is in blob; 0 = skip. */
static int pair_params(const ring_plan *pl, fwd_bufs *b, const ring_seg *qs,
                       int s, const ring_seg *ks, char *blob, attn_params *pp) {
  if (!ring_pair(pl, qs, ks, pp, &b->arr))
    return 0;
  const attn_params *p = &pl->p;
  pp->q = ring_rows(&p->q, qs->off, qs->len);
  ring_blob_views(pl, blob, pl->ranks[s].n, ks->off, ks->len, &pp->k, &pp->v);
  pp->o = ring_view(b->tmp_o, ATTN_DTYPE_F32, pl->batch, qs->len, pl->hq,
                    pl->dv, 0, qs->len);
  pp->lse = b->tmp_l;
  pp->workspace = b->ws;
  pp->workspace_size = b->ws_size;
  return 1;
}

static attn_status fwd_alloc(attn_context *ctx, const ring_plan *pl,
                             fwd_bufs *b, char *msg) {
  const ring_rank *me = &pl->ranks[pl->rank];
  int64_t maxq = 1;
  for (int i = 0; i < me->nseg; i++)
    if (me->seg[i].len > maxq)
      maxq = me->seg[i].len;
  const size_t no = (size_t)(pl->batch * maxq * pl->hq * pl->dv) * 4;
  const size_t nl = (size_t)(pl->batch * pl->hq * maxq) * 4;
  for (int i = 0; i < 2; i++) {
    b->blob[i] = track(b, ring_slice_bytes(pl, pl->max_n));
    b->acc_o[i] = track(b, no);
    b->acc_l[i] = track(b, nl);
  }
  b->tmp_o = track(b, no);
  b->tmp_l = track(b, nl);
  b->alt_o = track(b, no);
  b->alt_l = track(b, nl);
  if (ring_pair_arrays_alloc(pl, &b->arr) != ATTN_OK || !b->blob[0] ||
      !b->blob[1] || !b->acc_o[0] || !b->acc_o[1] || !b->acc_l[0] ||
      !b->acc_l[1] || !b->tmp_o || !b->tmp_l || !b->alt_o || !b->alt_l) {
    snprintf(msg, RING_MSG, "out of memory (ring buffers, %zu bytes)",
             b->bytes);
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  /* Every pair call this rank will make: checked, and the largest
   * workspace, so that the ring loop allocates nothing and cannot fail;
   * sized for the caller's context (its thread count sizes the per-thread
   * scratch), which the pair calls run on. */
  size_t ws = 0;
  for (int s = 0; s < pl->nranks; s++) {
    if (!pl->need[(size_t)pl->rank * (size_t)pl->nranks + (size_t)s])
      continue;
    for (int i = 0; i < me->nseg; i++)
      for (int j = 0; j < pl->ranks[s].nseg; j++) {
        attn_params pp;
        if (!pair_params(pl, b, &me->seg[i], s, &pl->ranks[s].seg[j],
                         b->blob[0], &pp))
          continue;
        pp.error_message = msg;
        pp.error_message_size = RING_MSG;
        size_t n = 0;
        attn_status st = attn_forward_check(&pp);
        if (st == ATTN_OK)
          st = attn_forward_workspace_size(ctx, &pp, &n);
        if (st != ATTN_OK)
          return st;
        if (n > ws)
          ws = n;
      }
  }
  b->ws_size = ws;
  b->ws = track(b, ws);
  if (b->ws == NULL) {
    snprintf(msg, RING_MSG, "out of memory (workspace, %zu bytes)", ws);
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  for (int i = 0; i < me->nseg; i++) {
    const int64_t n = pl->batch * pl->hq * me->seg[i].len;
    for (int64_t x = 0; x < n; x++)
      b->acc_l[i][x] = -INFINITY;
  }
  return ATTN_OK;
}

/* acc_i <- merge(acc_i, partial) through attn_merge (f32 throughout). */
static attn_status merge_into(attn_context *ctx, const ring_plan *pl,
                              fwd_bufs *b, int i, int64_t len, char *msg) {
  attn_merge_params m;
  attn_merge_params_init(&m);
  attn_tensor parts[2] = {ring_view(b->acc_o[i], ATTN_DTYPE_F32, pl->batch, len,
                                    pl->hq, pl->dv, 0, len),
                          ring_view(b->tmp_o, ATTN_DTYPE_F32, pl->batch, len,
                                    pl->hq, pl->dv, 0, len)};
  const float *lses[2] = {b->acc_l[i], b->tmp_l};
  m.n_parts = 2;
  m.o_parts = parts;
  m.lse_parts = lses;
  m.o = ring_view(b->alt_o, ATTN_DTYPE_F32, pl->batch, len, pl->hq, pl->dv, 0,
                  len);
  m.lse = b->alt_l;
  m.num_threads = pl->p.num_threads;
  m.error_message = msg;
  m.error_message_size = RING_MSG;
  const attn_status st = attn_merge(ctx, &m);
  float *t = b->acc_o[i];
  b->acc_o[i] = b->alt_o;
  b->alt_o = t;
  t = b->acc_l[i];
  b->acc_l[i] = b->alt_l;
  b->alt_l = t;
  return st;
}

/* Every visible pair of this rank's query segments with slice s. */
static attn_status compute_slice(attn_context *ctx, const ring_plan *pl,
                                 fwd_bufs *b, int s, char *blob,
                                 attn_ring_stats *stats, char *msg) {
  const ring_rank *me = &pl->ranks[pl->rank];
  for (int i = 0; i < me->nseg; i++)
    for (int j = 0; j < pl->ranks[s].nseg; j++) {
      attn_params pp;
      if (!pair_params(pl, b, &me->seg[i], s, &pl->ranks[s].seg[j], blob,
                       &pp)) {
        stats->pairs_skipped++;
        continue;
      }
      pp.error_message = msg;
      pp.error_message_size = RING_MSG;
      if (pl->p.cu_seqlens_q != NULL) {
        /* rows past the last packed sequence are not written by the call:
         * they must merge as "no key" (o = 0, lse = -inf) */
        const int64_t len = me->seg[i].len;
        memset(b->tmp_o, 0, (size_t)(pl->batch * len * pl->hq * pl->dv) * 4);
        for (int64_t x = 0; x < pl->batch * pl->hq * len; x++)
          b->tmp_l[x] = -INFINITY;
      }
      attn_status st = attn_forward(ctx, &pp);
      if (st == ATTN_OK)
        st = merge_into(ctx, pl, b, i, me->seg[i].len, msg);
      if (st != ATTN_OK)
        return st;
      stats->pairs_computed++;
    }
  return ATTN_OK;
}

/* Sinks join the merged denominator: lse' = log(exp(lse) + exp(sink)).
 * Rows in no packed document (from cu_seqlens[varlen_batch] on) stay
 * o = 0, lse = -inf, as ring.h documents (the sink had been applied to
 * them too, giving lse = sink; found by fuzz/ring_fuzz.c). */
static void apply_sinks(const ring_plan *pl, fwd_bufs *b) {
  const ring_rank *me = &pl->ranks[pl->rank];
  const int64_t end = pl->p.cu_seqlens_q != NULL
                          ? pl->p.cu_seqlens_q[pl->p.varlen_batch]
                          : INT64_MAX;
  for (int i = 0; i < me->nseg; i++) {
    const int64_t len = me->seg[i].len;
    for (int64_t bb = 0; bb < pl->batch; bb++)
      for (int64_t h = 0; h < pl->hq; h++) {
        const float sk = pl->p.sinks[h];
        if (sk == -INFINITY)
          continue;
        for (int64_t r = 0; r < len; r++) {
          if (me->seg[i].start + r >= end)
            continue; /* in no document */
          float *l = &b->acc_l[i][(bb * pl->hq + h) * len + r];
          if (isnan(*l))
            continue;
          const float mx = *l > sk ? *l : sk;
          const float nl = mx + logf(expf(*l - mx) + expf(sk - mx));
          const float f = expf(*l - nl);
          float *o = b->acc_o[i] + ((bb * len + r) * pl->hq + h) * pl->dv;
          for (int64_t c = 0; c < pl->dv; c++)
            o[c] *= f;
          *l = nl;
        }
      }
  }
}

static void store_out(const ring_plan *pl, fwd_bufs *b, float *lse) {
  const ring_rank *me = &pl->ranks[pl->rank];
  for (int i = 0; i < me->nseg; i++) {
    const ring_seg *sg = &me->seg[i];
    if (sg->len == 0)
      continue;
    ring_store(b->acc_o[i], &pl->p.o, sg->off, sg->len);
    if (lse == NULL)
      continue;
    for (int64_t bh = 0; bh < pl->batch * pl->hq; bh++)
      memcpy(lse + bh * me->n + sg->off, b->acc_l[i] + bh * sg->len,
             (size_t)sg->len * sizeof(float));
  }
}

attn_status attn_ring_forward_sized(attn_context *ctx, MPI_Comm comm,
                                    const attn_ring_opts *opts,
                                    const attn_params *local,
                                    size_t params_size) {
  const double t0 = ring_now();
  attn_ring_stats stats;
  memset(&stats, 0, sizeof stats);
  ring_plan pl;
  attn_status st = ring_plan_make(&pl, comm, opts, local, params_size, 0);
  if (st != ATTN_OK) {
    ring_plan_free(&pl);
    return st;
  }
  fwd_bufs b;
  memset(&b, 0, sizeof b);
  char msg[RING_MSG] = {0};
  st = ring_agree(&pl, fwd_alloc(ctx, &pl, &b, msg), msg);
  if (st != ATTN_OK) {
    ring_report(&pl, local);
    fwd_bufs_free(&b);
    ring_plan_free(&pl);
    return st;
  }
  const int R = pl.nranks, me = pl.rank;
  const int next = (me + 1) % R, prev = (me + R - 1) % R;
  ring_pack(&pl.p.k, b.blob[0]);
  ring_pack(&pl.p.v,
            b.blob[0] +
                (size_t)(pl.batch * pl.ranks[me].n * pl.hkv * pl.d) * pl.esk);
  int cur = 0;
  attn_status err = ATTN_OK; /* a failure stops computing, not the ring */
  for (int t = 0; t <= pl.max_t; t++) {
    const int s = (me - t % R + R) % R;
    const int have = t <= pl.chain[s];
    const int ns = (me - (t + 1) % R + R) % R;
    MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (t + 1 <= pl.max_t && t + 1 <= pl.chain[ns]) {
      MPI_Irecv(b.blob[1 - cur], (int)ring_slice_bytes(&pl, pl.ranks[ns].n),
                MPI_BYTE, prev, t + 1, pl.comm, &req[0]);
      stats.slices_received++;
    }
    if (have && t + 1 <= pl.chain[s]) {
      const size_t n = ring_slice_bytes(&pl, pl.ranks[s].n);
      MPI_Isend(b.blob[cur], (int)n, MPI_BYTE, next, t + 1, pl.comm, &req[1]);
      stats.bytes_sent += (double)n;
    }
    const double c0 = ring_now();
    if (have && err == ATTN_OK && pl.need[(size_t)me * (size_t)R + (size_t)s])
      err = compute_slice(ctx, &pl, &b, s, b.blob[cur], &stats, msg);
    const double c1 = ring_now();
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    stats.compute_seconds += c1 - c0;
    stats.wait_seconds += ring_now() - c1;
    cur = 1 - cur;
  }
  if (err == ATTN_OK && pl.p.sinks != NULL)
    apply_sinks(&pl, &b);
  if (err == ATTN_OK)
    store_out(&pl, &b, pl.p.lse);
  st = ring_agree(&pl, err, msg);
  if (st != ATTN_OK)
    ring_report(&pl, local);
  stats.buffer_bytes = b.bytes;
  stats.seconds = ring_now() - t0;
  if (opts != NULL && opts->stats != NULL)
    *opts->stats = stats;
  fwd_bufs_free(&b);
  ring_plan_free(&pl);
  return st;
}
