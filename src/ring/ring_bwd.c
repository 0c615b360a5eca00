/*
 * ring_bwd.c - attn_ring_backward. K/V slices travel round the ring as in
 * the forward; with each goes an f32 accumulator of its dK and dV: at every
 * rank that needs the slice, attn_backward on each visible (query chunk,
 * key chunk) pair, with the merged O and LSE of the forward (so P =
 * exp(S - lse) and D = rowsum(dO * O) are exact), adds its dK/dV into the
 * accumulator and its dQ into this rank's f32 dQ. The accumulator of slice
 * s leaves a rank after that rank's pairs and, at the end of its chain
 * (the last rank that needs s), goes straight back to s.
 */
#include "ring_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bwd_bufs {
  char *blob[2];          /* K then V of one slice                 */
  float *acc_in, *acc[2]; /* dK then dV of one slice, f32          */
  float *acc_final;       /* this rank's own, back from its chain  */
  float *dq_acc;          /* [batch, n, hq, d] f32                 */
  float *lse_seg[2];      /* the forward's LSE per query segment   */
  float *dq_tmp, *dk_tmp, *dv_tmp;
  float *drel_tmp;
  double *drel_acc;
  void *ws;
  size_t ws_size;
  ring_pair_arrays arr;
  size_t bytes;
} bwd_bufs;

static void *track(bwd_bufs *b, size_t n) {
  b->bytes += n;
  return calloc(n ? n : 1, 1);
}

static void bwd_bufs_free(bwd_bufs *b) {
  for (int i = 0; i < 2; i++) {
    free(b->blob[i]);
    free(b->acc[i]);
    free(b->lse_seg[i]);
  }
  free(b->acc_in);
  free(b->acc_final);
  free(b->dq_acc);
  free(b->dq_tmp);
  free(b->dk_tmp);
  free(b->dv_tmp);
  free(b->drel_tmp);
  free(b->drel_acc);
  free(b->ws);
  ring_pair_arrays_free(&b->arr);
}

/* Elements of one slice's dK + dV accumulator. */
static size_t acc_elems(const ring_plan *pl, int64_t n) {
  return (size_t)(pl->batch * n * pl->hkv * (pl->d + pl->dv));
}

static int pair_params(const ring_plan *pl, bwd_bufs *b, int i, int s,
                       const ring_seg *ks, char *blob, attn_params *pp) {
  const ring_seg *qs = &pl->ranks[pl->rank].seg[i];
  if (!ring_pair(pl, qs, ks, pp, &b->arr))
    return 0;
  const attn_params *p = &pl->p;
  pp->q = ring_rows(&p->q, qs->off, qs->len);
  ring_blob_views(pl, blob, pl->ranks[s].n, ks->off, ks->len, &pp->k, &pp->v);
  pp->o = ring_rows(&p->o, qs->off, qs->len);
  pp->lse = b->lse_seg[i];
  pp->dout = ring_rows(&p->dout, qs->off, qs->len);
  pp->dq = ring_view(b->dq_tmp, ATTN_DTYPE_F32, pl->batch, qs->len, pl->hq,
                     pl->d, 0, qs->len);
  pp->dk = ring_view(b->dk_tmp, ATTN_DTYPE_F32, pl->batch, ks->len, pl->hkv,
                     pl->d, 0, ks->len);
  pp->dv = ring_view(b->dv_tmp, ATTN_DTYPE_F32, pl->batch, ks->len, pl->hkv,
                     pl->dv, 0, ks->len);
  pp->drel_bias = p->drel_bias ? b->drel_tmp : NULL;
  pp->workspace = b->ws;
  pp->workspace_size = b->ws_size;
  return 1;
}

static attn_status bwd_alloc(attn_context *ctx, const ring_plan *pl,
                             bwd_bufs *b, char *msg) {
  const ring_rank *me = &pl->ranks[pl->rank];
  int64_t maxq = 1, maxk = 1;
  for (int i = 0; i < me->nseg; i++)
    if (me->seg[i].len > maxq)
      maxq = me->seg[i].len;
  for (int r = 0; r < pl->nranks; r++)
    for (int j = 0; j < pl->ranks[r].nseg; j++)
      if (pl->ranks[r].seg[j].len > maxk)
        maxk = pl->ranks[r].seg[j].len;
  const size_t acc = acc_elems(pl, pl->max_n) * 4;
  int ok = ring_pair_arrays_alloc(pl, &b->arr) == ATTN_OK;
  for (int i = 0; i < 2; i++) {
    b->blob[i] = track(b, ring_slice_bytes(pl, pl->max_n));
    b->acc[i] = track(b, acc);
    b->lse_seg[i] = track(b, (size_t)(pl->batch * pl->hq * maxq) * 4);
    ok = ok && b->blob[i] && b->acc[i] && b->lse_seg[i];
  }
  b->acc_in = track(b, acc);
  b->acc_final = track(b, acc);
  b->dq_acc = track(b, (size_t)(pl->batch * me->n * pl->hq * pl->d) * 4);
  b->dq_tmp = track(b, (size_t)(pl->batch * maxq * pl->hq * pl->d) * 4);
  b->dk_tmp = track(b, (size_t)(pl->batch * maxk * pl->hkv * pl->d) * 4);
  b->dv_tmp = track(b, (size_t)(pl->batch * maxk * pl->hkv * pl->dv) * 4);
  ok = ok && b->acc_in && b->acc_final && b->dq_acc && b->dq_tmp && b->dk_tmp &&
       b->dv_tmp;
  if (pl->p.drel_bias != NULL) {
    const size_t n = (size_t)(pl->p.rel_buckets * pl->hq);
    b->drel_tmp = track(b, n * 4);
    b->drel_acc = track(b, n * 8);
    ok = ok && b->drel_tmp && b->drel_acc;
  }
  if (!ok) {
    snprintf(msg, RING_MSG, "out of memory (ring buffers, %zu bytes)",
             b->bytes);
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  size_t ws = 0;
  for (int s = 0; s < pl->nranks; s++) {
    if (!pl->need[(size_t)pl->rank * (size_t)pl->nranks + (size_t)s])
      continue;
    for (int i = 0; i < me->nseg; i++)
      for (int j = 0; j < pl->ranks[s].nseg; j++) {
        attn_params pp;
        if (!pair_params(pl, b, i, s, &pl->ranks[s].seg[j], b->blob[0], &pp))
          continue;
        pp.error_message = msg;
        pp.error_message_size = RING_MSG;
        size_t n = 0;
        attn_status st = attn_backward_check(&pp);
        if (st == ATTN_OK)
          st = attn_backward_workspace_size(ctx, &pp, &n);
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
  /* the forward's LSE, contiguous per query segment */
  for (int i = 0; i < me->nseg; i++) {
    const ring_seg *sg = &me->seg[i];
    for (int64_t bh = 0; bh < pl->batch * pl->hq; bh++)
      memcpy(b->lse_seg[i] + bh * sg->len, pl->p.lse + bh * me->n + sg->off,
             (size_t)sg->len * sizeof(float));
  }
  return ATTN_OK;
}

static void add_rows(float *dst, const float *src, int64_t batch, int64_t n,
                     int64_t row0, int64_t len, int64_t width) {
  for (int64_t bb = 0; bb < batch; bb++) {
    float *d = dst + (bb * n + row0) * width;
    const float *s = src + bb * len * width;
    for (int64_t x = 0; x < len * width; x++)
      d[x] += s[x];
  }
}

/* Every visible pair of this rank's query segments with slice s; dK/dV
 * into acc (slice s's layout), dQ into dq_acc. */
static attn_status compute_slice(attn_context *ctx, const ring_plan *pl,
                                 bwd_bufs *b, int s, char *blob, float *acc,
                                 attn_ring_stats *stats, char *msg) {
  const ring_rank *me = &pl->ranks[pl->rank], *sr = &pl->ranks[s];
  float *dk_acc = acc;
  float *dv_acc = acc + pl->batch * sr->n * pl->hkv * pl->d;
  for (int i = 0; i < me->nseg; i++)
    for (int j = 0; j < sr->nseg; j++) {
      const ring_seg *ks = &sr->seg[j], *qs = &me->seg[i];
      attn_params pp;
      if (!pair_params(pl, b, i, s, ks, blob, &pp)) {
        stats->pairs_skipped++;
        continue;
      }
      pp.error_message = msg;
      pp.error_message_size = RING_MSG;
      if (pl->p.cu_seqlens_q != NULL) { /* rows in no packed sequence */
        memset(b->dq_tmp, 0,
               (size_t)(pl->batch * qs->len * pl->hq * pl->d) * 4);
        memset(b->dk_tmp, 0,
               (size_t)(pl->batch * ks->len * pl->hkv * pl->d) * 4);
        memset(b->dv_tmp, 0,
               (size_t)(pl->batch * ks->len * pl->hkv * pl->dv) * 4);
      }
      const attn_status st = attn_backward(ctx, &pp);
      if (st != ATTN_OK)
        return st;
      add_rows(b->dq_acc, b->dq_tmp, pl->batch, me->n, qs->off, qs->len,
               pl->hq * pl->d);
      add_rows(dk_acc, b->dk_tmp, pl->batch, sr->n, ks->off, ks->len,
               pl->hkv * pl->d);
      add_rows(dv_acc, b->dv_tmp, pl->batch, sr->n, ks->off, ks->len,
               pl->hkv * pl->dv);
      if (b->drel_acc != NULL)
        for (int64_t x = 0; x < pl->p.rel_buckets * pl->hq; x++)
          b->drel_acc[x] += b->drel_tmp[x];
      stats->pairs_computed++;
    }
  return ATTN_OK;
}

/* dsinks[h] = -sum over every row of exp(sink - lse) rowsum(dO * O). */
static void dsinks_local(const ring_plan *pl, double *out) {
  const attn_params *p = &pl->p;
  const int64_t n = pl->ranks[pl->rank].n;
  for (int64_t h = 0; h < pl->hq; h++) {
    double acc = 0.0;
    const float sk = p->sinks[h];
    for (int64_t bb = 0; bb < pl->batch && sk != -INFINITY; bb++)
      for (int64_t i = 0; i < n; i++) {
        const float l = p->lse[(bb * pl->hq + h) * n + i];
        if (l == -INFINITY)
          continue;
        double dot = 0.0;
        for (int64_t c = 0; c < pl->dv; c++)
          dot += (double)ring_load(&p->dout, bb, i, h, c) *
                 ring_load(&p->o, bb, i, h, c);
        acc -= exp((double)sk - l) * dot;
      }
    out[h] = acc;
  }
}

attn_status attn_ring_backward_sized(attn_context *ctx, MPI_Comm comm,
                                     const attn_ring_opts *opts,
                                     const attn_params *local,
                                     size_t params_size) {
  const double t0 = ring_now();
  attn_ring_stats stats;
  memset(&stats, 0, sizeof stats);
  ring_plan pl;
  attn_status st = ring_plan_make(&pl, comm, opts, local, params_size, 1);
  if (st != ATTN_OK) {
    ring_plan_free(&pl);
    return st;
  }
  bwd_bufs b;
  memset(&b, 0, sizeof b);
  char msg[RING_MSG] = {0};
  st = ring_agree(&pl, bwd_alloc(ctx, &pl, &b, msg), msg);
  if (st != ATTN_OK) {
    ring_report(&pl, local);
    bwd_bufs_free(&b);
    ring_plan_free(&pl);
    return st;
  }
  const int R = pl.nranks, me = pl.rank;
  const int next = (me + 1) % R, prev = (me + R - 1) % R;
  const int tag_acc = R + 1, tag_ret = 3 * R + 2;
  const int64_t n_me = pl.ranks[me].n;
  ring_pack(&pl.p.k, b.blob[0]);
  ring_pack(&pl.p.v,
            b.blob[0] + (size_t)(pl.batch * n_me * pl.hkv * pl.d) * pl.esk);
  /* this rank's own accumulator comes back from the end of its chain */
  MPI_Request ret_req = MPI_REQUEST_NULL;
  if (pl.chain[me] > 0)
    MPI_Irecv(b.acc_final, (int)acc_elems(&pl, n_me), MPI_FLOAT,
              (me + pl.chain[me]) % R, tag_ret, pl.comm, &ret_req);
  MPI_Request acc_req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  int cur = 0;
  attn_status err = ATTN_OK;
  for (int t = 0; t <= pl.max_t; t++) {
    const int s = (me - t % R + R) % R;
    const int have = t <= pl.chain[s];
    const int ns = (me - (t + 1) % R + R) % R;
    const int64_t n_s = pl.ranks[s].n;
    MPI_Request req[3] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (t + 1 <= pl.max_t && t + 1 <= pl.chain[ns]) {
      MPI_Irecv(b.blob[1 - cur], (int)ring_slice_bytes(&pl, pl.ranks[ns].n),
                MPI_BYTE, prev, t + 1, pl.comm, &req[0]);
      stats.slices_received++;
    }
    if (have && t + 1 <= pl.chain[s]) {
      const size_t n = ring_slice_bytes(&pl, n_s);
      MPI_Isend(b.blob[cur], (int)n, MPI_BYTE, next, t + 1, pl.comm, &req[1]);
      stats.bytes_sent += (double)n;
    }
    if (have) {
      const size_t na = acc_elems(&pl, n_s);
      if (t > 0) /* what the ranks before added to slice s */
        MPI_Irecv(b.acc_in, (int)na, MPI_FLOAT, prev, tag_acc + t, pl.comm,
                  &req[2]);
      const double w0 = ring_now();
      MPI_Wait(&acc_req[t % 2], MPI_STATUS_IGNORE); /* its send of t - 2 */
      stats.wait_seconds += ring_now() - w0;
      float *acc = b.acc[t % 2];
      memset(acc, 0, na * sizeof(float));
      const double c0 = ring_now();
      if (err == ATTN_OK && pl.need[(size_t)me * (size_t)R + (size_t)s])
        err = compute_slice(ctx, &pl, &b, s, b.blob[cur], acc, &stats, msg);
      const double c1 = ring_now();
      stats.compute_seconds += c1 - c0;
      if (t > 0) {
        MPI_Wait(&req[2], MPI_STATUS_IGNORE);
        stats.wait_seconds += ring_now() - c1;
        for (size_t x = 0; x < na; x++)
          acc[x] += b.acc_in[x];
      }
      if (t < pl.chain[s]) {
        MPI_Isend(acc, (int)na, MPI_FLOAT, next, tag_acc + t + 1, pl.comm,
                  &acc_req[t % 2]);
        stats.bytes_sent += (double)na * 4;
      } else if (t > 0) {
        MPI_Isend(acc, (int)na, MPI_FLOAT, s, tag_ret, pl.comm,
                  &acc_req[t % 2]);
        stats.bytes_sent += (double)na * 4;
      } else {
        memcpy(b.acc_final, acc, na * sizeof(float));
      }
    }
    const double w1 = ring_now();
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    stats.wait_seconds += ring_now() - w1;
    cur = 1 - cur;
  }
  const double w2 = ring_now();
  MPI_Wait(&ret_req, MPI_STATUS_IGNORE);
  MPI_Waitall(2, acc_req, MPI_STATUSES_IGNORE);
  stats.wait_seconds += ring_now() - w2;
  st = ring_agree(&pl, err, msg);
  if (st == ATTN_OK) {
    const attn_params *p = &pl.p;
    ring_store(b.dq_acc, &p->dq, 0, n_me);
    ring_store(b.acc_final, &p->dk, 0, n_me);
    ring_store(b.acc_final + pl.batch * n_me * pl.hkv * pl.d, &p->dv, 0, n_me);
    if (p->dsinks != NULL && p->sinks != NULL) {
      double loc[1024], *part = pl.hq <= 1024 ? loc : NULL;
      double *sum = calloc((size_t)pl.hq, sizeof *sum);
      if (part == NULL)
        part = calloc((size_t)pl.hq, sizeof *part);
      /* allocation failures are agreed below */
      if (part != NULL)
        dsinks_local(&pl, part);
      int bad = part == NULL || sum == NULL, any = 0;
      MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, pl.comm);
      if (!any) {
        MPI_Allreduce(part, sum, (int)pl.hq, MPI_DOUBLE, MPI_SUM, pl.comm);
        for (int64_t h = 0; h < pl.hq; h++)
          p->dsinks[h] = (float)sum[h];
      } else {
        st = ATTN_ERR_OUT_OF_MEMORY;
        snprintf(pl.msg, RING_MSG, "out of memory (dsinks)");
      }
      if (part != loc)
        free(part);
      free(sum);
    }
    if (st == ATTN_OK && b.drel_acc != NULL) {
      const int n = (int)(p->rel_buckets * pl.hq);
      MPI_Allreduce(MPI_IN_PLACE, b.drel_acc, n, MPI_DOUBLE, MPI_SUM, pl.comm);
      for (int x = 0; x < n; x++)
        p->drel_bias[x] = (float)b.drel_acc[x];
    }
  }
  if (st != ATTN_OK)
    ring_report(&pl, local);
  stats.buffer_bytes = b.bytes;
  stats.seconds = ring_now() - t0;
  if (opts != NULL && opts->stats != NULL)
    *opts->stats = stats;
  bwd_bufs_free(&b);
  ring_plan_free(&pl);
  return st;
}
