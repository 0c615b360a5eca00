/* The portable forward framework: validation, workspace, threads, query
 * tiles in and output rows out (the packing of K and V: fwd_pack.c). The
 * O(seq_q x seq_k) work happens in the per-ISA kernel (kernels.h) one query
 * tile at a time.
 *
 * Work is split into items (query head, query tile) inside groups
 * (sequence, kv head), in one of two modes:
 *   private  many groups: a thread takes groups nobody has started, packs
 *            each into its own buffers and runs its items; when none are
 *            left it helps with the items remaining in others. No barrier.
 *   shared   few groups or very long keys: per group the team packs one
 *            copy (panel t to thread t mod T), meets at a barrier, shares
 *            the items, meets again.
 * Each output row is computed by exactly one thread with the same
 * instruction sequence whatever T is and whichever thread it is, so results
 * are bitwise identical across thread counts.
 *
 * Calls with few query tiles per thread (one head of 128 to 1024 queries)
 * may split some tiles into row ranges, each its own item, and may claim a
 * head's short last tile after the others (split_for, fwd_layout.c). A
 * range runs its tile's key tiles, kinds and key bound (j_end) with the
 * tile's other rows left out; every step of the kernel is per row (the
 * fused path's kept-or-redone test, the sums over d and over the keys), so
 * a row's bits do not depend on which rows share its call. */
#include "kernels/decode.h"
#include "kernels/fwd_layout.h"
#include "kernels/fwd_pack.h"
#include "kernels/plan.h"
#include "kernels/sparse_split.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

typedef struct fwd_job {
  const attn_plan *pl;
  const attn_problem *pr;
  const attn_kernel *k;
  const attn_tiles *tiles; /* a compiled mask's lists, or NULL: each
                              query tile compiles its own runs */
  ws_layout w;
  int64_t dvp;
  int bf16;              /* Q and K packed as bf16 for k = fwd_bf16 */
  int pv16;              /* V packed as bf16 pairs too (bf16 output)     */
  int64_t dq;            /* row length of packed Q and K: d, even for bf16 */
  attn_fwd_pack pack;    /* the packing's view of the fields above    */
  float *kpack, *vpack;  /* shared packs (shared mode)           */
  char *scratch;         /* per-thread regions                     */
  atomic_llong *claimed; /* [batch * heads_kv] items taken per group  */
  atomic_llong cursor;   /* next group nobody has started             */
  atomic_llong counter;  /* shared mode: items taken in this group    */
} fwd_job;

/* Prepares rows [off, off + rows) of query tile qt of head h in slot
 * `slot` of a thread's scratch ws: their rows of Q, the intervals and runs
 * (those of the whole tile), the state buffers. */
static void prep_qtile(const fwd_job *job, const attn_seq *sq, int64_t h,
                       int64_t qt, int off, int rows, const float *kpack,
                       const float *vpack, char *ws, int slot, attn_qtile *tp) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const attn_kernel *k = job->k;
  const int64_t d = pr->d, dvp = job->dvp;
  char *sb = ws + (size_t)slot * job->w.slot;
  attn_qtile t;
  t.rows = rows;
  t.i0 = qt * k->br + off;
  t.d = d;
  t.dvp = dvp;
  float *qb = (float *)(sb + job->w.q);
  const int rows_mr = (t.rows + k->mr - 1) / k->mr * k->mr;
  t.qh = t.kh = t.vh = NULL;
  t.qscale = pr->scale;
  for (int r = 0; r < t.rows && job->bf16; r++)
    attn_fwd_load_row_bf16(
        attn_elem(&p->q, sq->q_bat, sq->q_off + t.i0 + r, h, 0), p->q.stride[3],
        d, job->dq, (uint16_t *)qb + r * job->dq);
  if (job->bf16) { /* zero rows to the micro-kernel's or AMX's 16 rows */
    const int pad = ATTN_MIN(k->br, ATTN_MAX(rows_mr, (t.rows + 15) / 16 * 16));
    memset((uint16_t *)qb + t.rows * job->dq, 0,
           sizeof(uint16_t) * (size_t)((pad - t.rows) * job->dq));
    t.d = job->dq;
    t.qh = (const uint16_t *)qb;
    t.kh = (const uint16_t *)kpack;
    t.vh = job->pv16 ? (const uint16_t *)vpack : NULL;
  }
  for (int r = 0; r < t.rows && !job->bf16; r++) {
    float *row = qb + r * d;
    if (r + ATTN_PREFETCH_ROWS < t.rows)
      attn_prefetch_elem(&p->q, sq->q_bat,
                         sq->q_off + t.i0 + r + ATTN_PREFETCH_ROWS, h, d, 0);
    attn_load_row_poison(
        attn_elem(&p->q, sq->q_bat, sq->q_off + t.i0 + r, h, 0), p->q.dtype,
        p->q.stride[3], d, 1.0f, row);
  }
  if (!job->bf16)
    memset(qb + t.rows * d, 0,
           sizeof(float) * (size_t)((rows_mr - t.rows) * d));
  t.q = qb;
  t.kp = kpack;
  t.vp = vpack;
  /* The whole tile's intervals, key bound and runs; then the view of the
   * part's rows. */
  int64_t *lo = (int64_t *)(sb + job->w.lo), *hi = (int64_t *)(sb + job->w.hi);
  const int64_t ti0 = qt * k->br;
  const int trows = (int)ATTN_MIN((int64_t)k->br, sq->sq - ti0);
  t.j_end = attn_plan_tile(job->pl, sq, h, ti0, trows, lo, hi, &t.sc, &t.mv);
  if (job->tiles) {
    t.runs = attn_tiles_get(job->tiles, sq->b, h, qt, &t.nruns);
  } else {
    attn_tile_run *runs = (attn_tile_run *)(sb + job->w.runs);
    t.nruns = attn_tiles_compile_one(pr, sq, h, qt, lo, hi, runs);
    t.runs = runs;
  }
  t.mv.i0 = t.i0;
  t.mv.lo = lo + off;
  t.mv.hi = hi + off;
  t.s = (float *)(ws + job->w.s);
  t.acc = (float *)(sb + job->w.acc);
  t.accm = (float *)(sb + job->w.accm);
  float *vec = (float *)(sb + job->w.vec);
  t.m = vec;
  t.l = vec + k->br;
  t.lse = vec + 2 * k->br;
  t.alpha = vec + 3 * k->br;
  t.lm = vec + 4 * k->br;
  t.ntiles = NULL;
  t.resume = t.partial = 0;
  t.sink = p->sinks ? p->sinks[h] : -INFINITY;
  attn_dropout_init(&t.drop, p->dropout_seed, p->dropout_p, sq->b, h);
  *tp = t;
}

/* Writes a finished tile's rows of O (and the LSE). */
static void write_qtile(const fwd_job *job, const attn_seq *sq, int64_t h,
                        const attn_qtile *tp) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const attn_qtile t = *tp;
  const int64_t dvp = job->dvp;
  for (int r = 0; r < t.rows; r++) {
    const int64_t i = sq->q_off + t.i0 + r;
    if (r + ATTN_PREFETCH_ROWS < t.rows)
      attn_prefetch_elem(&p->o, sq->q_bat, i + ATTN_PREFETCH_ROWS, h, pr->dv,
                         1);
    attn_store_row(t.acc + r * dvp, pr->dv,
                   attn_elem(&p->o, sq->q_bat, i, h, 0), p->o.dtype,
                   p->o.stride[3]);
    if (p->lse) {
      const int64_t li = pr->varlen ? h * p->q.shape[1] + i
                                    : (sq->b * pr->hq + h) * sq->sq + t.i0 + r;
      p->lse[li] = t.lse[r];
    }
  }
}

static void run_qtile(const fwd_job *job, const attn_seq *sq, int64_t h,
                      int64_t qt, int off, int rows, const float *kpack,
                      const float *vpack, char *ws) {
  attn_qtile t;
  if (rows == 0)
    return;
  prep_qtile(job, sq, h, qt, off, rows, kpack, vpack, ws, 0, &t);
  job->k->fwd_qtile(&t);
  write_qtile(job, sq, h, &t);
}

/* The runs of n that fall in key tiles [c0, c1), clipped, into out. */
static int clip_runs(const attn_tile_run *r, int n, int64_t c0, int64_t c1,
                     attn_tile_run *out) {
  int m = 0;
  for (int i = 0; i < n; i++) {
    const int64_t a = ATTN_MAX(r[i].kt0, c0), b = ATTN_MIN(r[i].kt1, c1);
    if (a < b) {
      out[m] = r[i];
      out[m].kt0 = a;
      out[m++].kt1 = b;
    }
  }
  return m;
}

/* Query tiles qt0 .. qt0 + n - 1 of head h (n <= QGROUP), key chunk by key
 * chunk: every tile of the group takes its runs inside a chunk while the
 * chunk's packed K and V are in L2. */
static void run_qgroup(const fwd_job *job, const attn_seq *sq, int64_t h,
                       int64_t qt0, int n, const float *kpack,
                       const float *vpack, char *ws) {
  attn_qtile t[QGROUP];
  const attn_tile_run *runs[QGROUP];
  int nruns[QGROUP], ntiles[QGROUP], started[QGROUP];
  attn_tile_run *cr = (attn_tile_run *)(ws + job->w.crun);
  int64_t kt_end = 0;
  for (int g = 0; g < n; g++) {
    const int64_t q0 = (qt0 + g) * job->k->br;
    prep_qtile(job, sq, h, qt0 + g, 0, (int)ATTN_MIN(job->k->br, sq->sq - q0),
               kpack, vpack, ws, g, &t[g]);
    runs[g] = t[g].runs;
    nruns[g] = t[g].nruns;
    ntiles[g] = started[g] = 0;
    t[g].ntiles = &ntiles[g];
    for (int i = 0; i < nruns[g]; i++)
      kt_end = ATTN_MAX(kt_end, runs[g][i].kt1);
  }
  for (int64_t c0 = 0; c0 < kt_end; c0 += job->w.chunk_kt) {
    for (int g = 0; g < n; g++) {
      t[g].nruns = clip_runs(runs[g], nruns[g], c0, c0 + job->w.chunk_kt, cr);
      if (t[g].nruns == 0)
        continue;
      t[g].runs = cr;
      t[g].resume = started[g];
      t[g].partial = 1;
      job->k->fwd_qtile(&t[g]);
      started[g] = 1;
    }
  }
  for (int g = 0; g < n; g++) { /* the final flush and normalisation */
    t[g].runs = cr;
    t[g].nruns = 0;
    t[g].resume = started[g];
    t[g].partial = 0;
    job->k->fwd_qtile(&t[g]);
    write_qtile(job, sq, h, &t[g]);
  }
}

/* Item it of a (sequence, kv head) group's items: its query head and its
 * query tile or rows of one (head_item), or its group of query tiles (the
 * last ones first: under causal masks they see the most keys, and
 * longest-first keeps the team busy until the end). */
static void run_item(const fwd_job *job, const attn_seq *sq, int64_t g,
                     int64_t it, const float *kpack, const float *vpack,
                     char *ws) {
  const attn_problem *pr = job->pr;
  const int64_t nqt = (sq->sq + job->k->br - 1) / job->k->br;
  const int64_t gs = job->w.nslot, ngq = (nqt + gs - 1) / gs;
  if (gs == 1) {
    const int64_t per_head = head_items(&job->w, nqt);
    int64_t qt;
    int off;
    const int rows = head_item(&job->w, nqt, it % per_head, job->k->mr,
                               job->k->br, sq->sq, &qt, &off);
    run_qtile(job, sq, g * pr->group + it / per_head, qt, off, rows, kpack,
              vpack, ws);
    return;
  }
  const int64_t h = g * pr->group + it / ngq, gq = ngq - 1 - it % ngq;
  run_qgroup(job, sq, h, gq * gs, (int)ATTN_MIN(gs, nqt - gq * gs), kpack,
             vpack, ws);
}

/* Items of a (sequence, kv head) group: query heads x query-tile groups. */
static int64_t group_items(const fwd_job *job, const attn_seq *sq) {
  const int64_t nqt = (sq->sq + job->k->br - 1) / job->k->br;
  return job->pr->group * (job->w.nslot == 1
                               ? head_items(&job->w, nqt)
                               : (nqt + job->w.nslot - 1) / job->w.nslot);
}

/* Shared mode: per (sequence, kv head) group, pack together, barrier,
 * share the tiles, barrier. */
static void worker_shared(fwd_job *job, attn_team *team, int tid,
                          int nthreads) {
  const attn_problem *pr = job->pr;
  const attn_kernel *k = job->k;
  char *ws = job->scratch + (size_t)tid * job->w.per_thread;
  for (int64_t b = 0; b < pr->batch; b++) {
    attn_seq sq;
    attn_problem_seq(pr, b, &sq);
    if (sq.sq == 0)
      continue; /* the same decision on every thread: no barrier needed */
    const int64_t npanels = (sq.sk + k->nr - 1) / k->nr;
    const int64_t items = group_items(job, &sq);
    for (int64_t g = 0; g < pr->hk; g++) {
      /* The q buffer is free during packing: use it for one K row. */
      float *tmp = (float *)(ws + job->w.q);
      for (int64_t pnl = tid; pnl < npanels; pnl += nthreads)
        attn_fwd_pack_panel(&job->pack, &sq, g, pnl, job->kpack, job->vpack,
                            tmp);
      if (tid == 0)
        atomic_store(&job->counter, 0);
      attn_team_barrier(team);
      for (;;) {
        const int64_t it = atomic_fetch_add(&job->counter, 1);
        if (it >= items)
          break;
        run_item(job, &sq, g, it, job->kpack, job->vpack, ws);
      }
      attn_team_barrier(team);
    }
  }
}

/* Private mode, one group (sequence b, kv head g): claim items (query
 * head, tile) from the group's counter; pack K and V into this thread's
 * buffers only once an item is actually won. */
static void private_group(fwd_job *job, int64_t gi, int64_t *have, char *ws,
                          float *kpack, float *vpack) {
  const attn_problem *pr = job->pr;
  const attn_kernel *k = job->k;
  const int64_t b = gi / pr->hk, g = gi % pr->hk;
  attn_seq sq;
  attn_problem_seq(pr, b, &sq);
  const int64_t items = group_items(job, &sq);
  for (;;) {
    const int64_t it = atomic_fetch_add(&job->claimed[gi], 1);
    if (it >= items)
      return;
    if (*have != gi) {
      float *tmp = (float *)(ws + job->w.q);
      const int64_t npanels = (sq.sk + k->nr - 1) / k->nr;
      for (int64_t pnl = 0; pnl < npanels; pnl++)
        attn_fwd_pack_panel(&job->pack, &sq, g, pnl, kpack, vpack, tmp);
      *have = gi;
    }
    run_item(job, &sq, g, it, kpack, vpack, ws);
  }
}

/* Private mode: each thread takes groups nobody has started (so it packs
 * each group it owns once and threads rarely share a group), then helps
 * with whatever is left in the others. */
static void worker_private(fwd_job *job, int tid, int nthreads) {
  const attn_problem *pr = job->pr;
  char *ws = job->scratch + (size_t)tid * job->w.per_thread;
  float *kpack =
      (float *)(ws + job->w.per_thread - job->w.kpack - job->w.vpack);
  float *vpack = kpack + job->w.kpack / sizeof(float);
  const int64_t groups = pr->batch * pr->hk;
  int64_t have = -1;
  for (;;) {
    const int64_t gi = atomic_fetch_add(&job->cursor, 1);
    if (gi >= groups)
      break;
    private_group(job, gi, &have, ws, kpack, vpack);
  }
  const int64_t start = groups * tid / nthreads;
  for (int64_t n = 0; n < groups; n++)
    private_group(job, (start + n) % groups, &have, ws, kpack, vpack);
}

static void fwd_worker(void *arg, attn_team *team, int tid, int nthreads) {
  fwd_job *job = (fwd_job *)arg;
  if (job->w.private_pack)
    worker_private(job, tid, nthreads);
  else
    worker_shared(job, team, tid, nthreads);
}

attn_status attn_forward_check_sized(const attn_params *user, size_t size) {
  attn_plan pl;
  return attn_plan_prepare(NULL, user, size, ATTN_PASS_FWD, &pl);
}

static attn_status prepare(attn_context *ctx, const attn_params *user,
                           size_t size, attn_plan *pl, ws_layout *w) {
  attn_status st = attn_plan_prepare(ctx, user, size, ATTN_PASS_FWD, pl);
  if (st != ATTN_OK)
    return st;
  st = attn_fwd_layout(pl, w);
  if (st != ATTN_OK)
    return attn_fail(&pl->p, st, "workspace size overflows");
  return ATTN_OK;
}

attn_status attn_forward_workspace_size_sized(attn_context *ctx,
                                              const attn_params *user,
                                              size_t size, size_t *bytes) {
  attn_plan pl;
  ws_layout w;
  attn_status st = prepare(ctx, user, size, &pl, &w);
  if (st != ATTN_OK)
    return st;
  if (!bytes)
    return attn_fail(&pl.p, ATTN_ERR_NULL_POINTER, "bytes is NULL");
  if (attn_split_eligible(&pl)) /* Child et al.'s patterns: sparse_split.c */
    return attn_split_workspace_size(&pl, 0, bytes);
  if (attn_decode_eligible(&pl) && !attn_sparse_on(&pl.p)) /* decode.c */
    return attn_decode_workspace_size(&pl, bytes);
  *bytes = w.total;
  return ATTN_OK;
}

attn_status attn_forward_sized(attn_context *ctx, const attn_params *user,
                               size_t size) {
  attn_plan pl;
  fwd_job job;
  attn_status st = prepare(ctx, user, size, &pl, &job.w);
  if (st != ATTN_OK)
    return st;
  if (attn_split_eligible(&pl)) /* Child et al.'s patterns: sparse_split.c */
    return attn_split_forward(&pl);
  if (attn_decode_eligible(&pl) && !attn_sparse_on(&pl.p)) /* decode.c */
    return attn_decode_forward(&pl);
  const attn_params *p = &pl.p;
  job.pl = &pl;
  job.pr = &pl.pr;
  job.k = pl.k.fwd;
  /* bf16 Q and K take bf16 dot products where the table has them; P is
   * rounded to bf16 for P V only when the output is bf16 (docs/bf16.md). */
  job.bf16 = attn_plan_bf16(&pl);
  job.pv16 = job.bf16 && p->v.dtype == ATTN_DTYPE_BF16 &&
             p->o.dtype == ATTN_DTYPE_BF16;
  if (job.bf16)
    job.k = pl.k.fwd_bf16;
  job.dq = job.bf16 ? (pl.pr.d + 1) / 2 * 2 : pl.pr.d;
  /* AMX tiles take 32 elements a step: Q and K rows of 16 mod 32 get 16
   * zeros more, so they take the tiles too (and the backward pads them the
   * same way to recompute S: bwd_body.h kd_pad). 2 (d + 16) bytes fit the
   * d floats the workspace holds for them (d >= 16). */
  if (job.bf16 && job.k->isa == ATTN_ISA_AMX_BF16 && pl.pr.d % 32 == 16)
    job.dq = pl.pr.d + 16;
  job.dvp = (int64_t)round_up((size_t)pl.pr.dv, (size_t)job.k->vl);
  job.pack =
      (attn_fwd_pack){&pl.pr, job.k->nr, job.dvp, job.dq, job.bf16, job.pv16};
  atomic_init(&job.counter, 0);

  void *mem;
  char *base;
  st = attn_workspace_acquire(pl.ctx, p, job.w.total, &mem, &base);
  if (st != ATTN_OK)
    return st;
  job.claimed = (atomic_llong *)base;
  base += job.w.counters;
  job.tiles = pl.compiled;
  if (job.w.private_pack) {
    job.kpack = job.vpack = NULL;
    job.scratch = base;
  } else {
    job.kpack = (float *)base;
    job.vpack = (float *)(base + job.w.kpack);
    job.scratch = base + job.w.kpack + job.w.vpack;
  }
  for (int64_t g = 0; g < pl.pr.batch * pl.pr.hk; g++)
    atomic_init(&job.claimed[g], 0);
  atomic_init(&job.cursor, 0);

  st = attn_team_run_ctx(pl.ctx, job.w.threads, fwd_worker, &job);
  attn_workspace_release(pl.ctx, mem);
  return st;
}

/* The 0.1 entry points (attn.h, "ABI"). */
attn_status attn_forward_check(const attn_params *p) {
  return attn_forward_check_sized(p, ATTN_PARAMS_SIZE_0_1);
}
attn_status attn_forward_workspace_size(attn_context *ctx, const attn_params *p,
                                        size_t *bytes) {
  return attn_forward_workspace_size_sized(ctx, p, ATTN_PARAMS_SIZE_0_1, bytes);
}
attn_status attn_forward(attn_context *ctx, const attn_params *p) {
  return attn_forward_sized(ctx, p, ATTN_PARAMS_SIZE_0_1);
}