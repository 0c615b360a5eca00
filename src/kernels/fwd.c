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
 * head's short last tile after the others (split_for). A range runs its
 * tile's key tiles, kinds and key bound (j_end) with the tile's other rows
 * left out; every step of the kernel is per row (the fused path's
 * kept-or-redone test, the sums over d and over the keys), so a row's bits
 * do not depend on which rows share its call. */
#include "kernels/decode.h"
#include "kernels/fwd_pack.h"
#include "kernels/plan.h"
#include "kernels/sparse_split.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 64

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Query-tile groups. With long keys a thread takes QGROUP consecutive
 * query tiles of one head at a time and runs them chunk by chunk over the
 * keys (each chunk about QCHUNK_BYTES of packed K and V, so it stays in
 * L2 while every tile of the group uses it), instead of streaming all of
 * K and V from L3 or memory once per tile. Each tile still sees its key
 * tiles in the same order with the same flushes (attn_qtile.resume,
 * .partial): the bits are those of one call per tile. */
#ifndef QGROUP /* each can be set at build time to compare (-DQGROUP=..) */
#define QGROUP 4
#endif
#ifndef QGROUP_MIN_KEYS
#define QGROUP_MIN_KEYS 8192 /* shorter: measured no faster (Zen 4) */
#endif
#ifndef QCHUNK_KIB
#define QCHUNK_KIB 256
#endif
#define QCHUNK_BYTES ((size_t)QCHUNK_KIB << 10)

/* Sizes of the workspace pieces. */
typedef struct ws_layout {
  size_t counters;     /* one claim counter per group (bytes)    */
  size_t kpack, vpack; /* packed K and V of one kv head (bytes)  */
  int private_pack;    /* 1: each thread packs its own K and V  */
  size_t per_thread;   /* one thread's scratch (bytes)           */
  /* a thread's scratch: nslot query-tile slots of `slot` bytes, then the
   * scores s and the clipped runs crun; offsets inside a slot: */
  size_t q, acc, accm, vec, lo, hi, runs;
  size_t slot, s, crun;
  int nslot;        /* query tiles per group (1: no groups) */
  int parts;        /* row ranges per split query tile        */
  int64_t nsplit;   /* tiles split: the last nsplit claimed   */
  int plast;        /* a head's last tile is claimed last     */
  int64_t chunk_kt; /* key tiles per chunk of a group        */
  size_t total;
  int threads;
} ws_layout;

static int mul_ok(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

/* The items of one head with nqt query tiles (nslot == 1). Tiles are
 * claimed from the last to the first (under causal masks the last see the
 * most keys, and longest-first keeps the team busy until the end), or,
 * with plast, the last tile after tile 0 (without a mask a short last tile
 * is the cheapest: claimed last it fills the gap). The last nsplit tiles
 * of that order are split into `parts` row ranges each: ranges of
 * ceil(rows / parts) rows rounded up to the micro-kernel's, the last range
 * of the tile first. */
static int64_t head_items(const ws_layout *w, int64_t nqt) {
  const int64_t ns = ATTN_MIN(w->nsplit, nqt);
  return nqt - ns + ns * w->parts;
}

/* Item u of a head: its tile *qt and the rows [*off, *off + return) of
 * that tile it covers (0 rows: nothing to do); sq: the sequence's queries. */
static int head_item(const ws_layout *w, int64_t nqt, int64_t u, int mr,
                     int64_t br, int64_t sq, int64_t *qt, int *off) {
  const int64_t ns = ATTN_MIN(w->nsplit, nqt), whole = nqt - ns;
  int64_t pos = u, np = 1, part = 0;
  if (u >= whole) {
    np = w->parts;
    pos = whole + (u - whole) / np;
    part = np - 1 - (u - whole) % np;
  }
  *qt = w->plast ? (pos < nqt - 1 ? nqt - 2 - pos : nqt - 1) : nqt - 1 - pos;
  const int64_t trows = ATTN_MIN(br, sq - *qt * br);
  const int64_t rr = ((trows + np - 1) / np + mr - 1) / mr * mr;
  *off = (int)(part * rr);
  return (int)ATTN_MAX(0, ATTN_MIN(rr, trows - part * rr));
}

/* Which split (ws_layout's parts, nsplit, plast) a team of `threads` runs
 * with, for calls with fewer than FWD_SPLIT_TILES query tiles per thread
 * (teams of up to FWD_SPLIT_TEAM; larger teams: 4 tiles per thread and
 * every tile split or none, the simulation's cost growing with both).
 * Each candidate's run is simulated: the items in the order the team
 * claims them, each to the thread that frees first, an item costing its
 * rows times the keys they see (half-way through a causal range) plus
 * FWD_ITEM_ROWS rows for streaming K and V and its set-up; the shortest
 * wins if it beats the unsplit run by more than 1% (the model is rough),
 * the simpler on a tie. On the 2-vCPU Zen 2 EPYC one head of 128
 * queries (tiles of 48, 48 and 32 rows) on two threads went from 0.061 to
 * 0.056 ms in 6 items of at most 24 rows (alternating runs, medians);
 * balanced splits (two heads of 128) gain nothing and lose a few percent
 * when split (the set-up per item), which FWD_ITEM_ROWS prices. One head
 * of 512 queries (ten tiles of 48, one of 32) ran 6 tiles on one thread
 * and 5 on the other; its last tile claimed last in two ranges evens them
 * (docs/decisions.md). Not for the bf16 kernels (AMX tiles take 16 rows
 * at a time: their paths are not split). */
#define FWD_MAX_PARTS 4
#ifndef FWD_SPLIT_TILES
#define FWD_SPLIT_TILES 12
#endif
#ifndef FWD_SPLIT_TEAM
#define FWD_SPLIT_TEAM 8
#endif
#ifndef FWD_ITEM_ROWS
#define FWD_ITEM_ROWS 2.0
#endif
static double split_makespan(const attn_problem *pr, const attn_kernel *k,
                             const ws_layout *w, int threads, double *work) {
  double load[ATTN_MAX_THREADS]; /* a binary min-heap of the threads' ends */
  for (int i = 0; i < threads; i++)
    load[i] = 0.0;
  const int64_t sq = pr->sq_max, sk = pr->sk_max, br = k->br;
  const int64_t nqt = (sq + br - 1) / br, items = head_items(w, nqt);
  const int causal = pr->p->causal;
  *work = 0.0;
  for (int64_t h = 0; h < pr->batch * pr->hq; h++)
    for (int64_t u = 0; u < items; u++) {
      int64_t qt;
      int off;
      const int rows = head_item(w, nqt, u, k->mr, br, sq, &qt, &off);
      if (rows <= 0)
        continue;
      double keys = (double)sk;
      if (causal != ATTN_CAUSAL_NONE) {
        const double ic =
            (double)(qt * br + off) + 0.5 * (double)(rows - 1) + 1.0 +
            (causal == ATTN_CAUSAL_BOTTOM_RIGHT ? (double)(sk - sq) : 0.0);
        keys = ic < 0 ? 0 : ic > (double)sk ? (double)sk : ic;
      }
      const double cost = (double)rows * keys + FWD_ITEM_ROWS * (double)sk;
      load[0] += cost;
      *work += cost;
      for (int i = 0;;) { /* sift the grown root down */
        const int l = 2 * i + 1, r = l + 1;
        int m = i;
        if (l < threads && load[l] < load[m])
          m = l;
        if (r < threads && load[r] < load[m])
          m = r;
        if (m == i)
          break;
        const double x = load[i];
        load[i] = load[m];
        load[m] = x;
        i = m;
      }
    }
  double end = 0.0;
  for (int i = 0; i < threads; i++)
    end = load[i] > end ? load[i] : end;
  return end;
}

/* w holds the unsplit plan (parts 1, nsplit 0, plast 0) on entry. */
static void split_for(const attn_plan *pl, int64_t tiles, int threads,
                      ws_layout *w) {
  const attn_kernel *k = pl->k.fwd;
  /* Small teams try every plan; larger ones (each simulated item costs
   * more, and there are more of them) only the split of every tile, with
   * fewer than 4 tiles per thread, as before 2026-12-04. */
  const int small = threads <= FWD_SPLIT_TEAM;
  if (attn_plan_bf16(pl) || threads < 2 ||
      tiles >= (small ? FWD_SPLIT_TILES : 4) * (int64_t)threads)
    return;
  const int64_t nqt = (pl->pr.sq_max + k->br - 1) / k->br;
  /* tiles split (the last claimed), ascending: each distinct one tried */
  const int64_t counts[] = {0, 1, 2, threads, 2 * (int64_t)threads, nqt};
  const size_t first = small ? 0 : sizeof counts / sizeof counts[0] - 1;
  ws_layout c = *w, best = *w;
  double work, more;
  double best_end = split_makespan(&pl->pr, k, w, threads, &work);
  /* No candidate beats the whole tiles' work dealt out evenly (splits only
   * add items): stop when a run is within 1% of that. The search costs a
   * few microseconds (a causal head of 512 queries ran 2-3% slower when
   * every candidate was tried and none won). */
  const double bound = 1.01 * work / threads, base = best_end;
  for (int plast = 0; plast <= small && best_end > bound; plast++)
    for (int parts = 1; parts <= FWD_MAX_PARTS; parts *= 2) {
      if (parts > 1 && (k->br % parts != 0 || (k->br / parts) % k->mr != 0))
        break;
      int64_t last = -1;
      for (size_t i = first;
           i < sizeof counts / sizeof counts[0] && best_end > bound; i++) {
        const int64_t ns = parts == 1 ? 0 : ATTN_MIN(counts[i], nqt);
        if (ns <= last || (parts > 1 && ns == 0) || (!plast && parts == 1))
          continue;
        last = ns;
        c.parts = parts;
        c.nsplit = ns;
        c.plast = plast;
        const double end = split_makespan(&pl->pr, k, &c, threads, &more);
        if (end < best_end && end < 0.99 * base)
          best = c, best_end = end;
      }
    }
  w->parts = best.parts;
  w->nsplit = best.nsplit;
  w->plast = best.plast;
}

/* A single (sequence, kv head) group packs privately up to these (see
 * layout). */
#ifndef FWD_PRIVATE_KEYS
#define FWD_PRIVATE_KEYS 1024
#endif
#ifndef FWD_PRIVATE_THREADS
#define FWD_PRIVATE_THREADS 4
#endif

/* found: split_for's answer for this team when threads_for has it (its
 * threads field equal to `threads`), else NULL. */
static attn_status layout(const attn_plan *pl, int threads,
                          const ws_layout *found, ws_layout *w) {
  const attn_problem *pr = &pl->pr;
  const attn_kernel *k = pl->k.fwd;
  const size_t nr = (size_t)k->nr, br = (size_t)k->br, bc = (size_t)k->bc;
  const size_t d = (size_t)pr->d;
  const size_t dvp = round_up((size_t)pr->dv, (size_t)k->vl);
  const size_t keys = round_up((size_t)pr->sk_max, nr);
  size_t a, b;
  if (!mul_ok(keys, d, &a) || !mul_ok(a, sizeof(float), &a) ||
      !mul_ok(keys, dvp, &b) || !mul_ok(b, sizeof(float), &b))
    return ATTN_ERR_OVERFLOW;
  w->kpack = round_up(a, ALIGN);
  w->vpack = round_up(b, ALIGN);
  if (!mul_ok((size_t)(pr->batch * pr->hk), sizeof(atomic_llong), &w->counters))
    return ATTN_ERR_OVERFLOW;
  w->counters = round_up(w->counters, ALIGN);
  attn_ws t = {0, 0};
  w->q = attn_ws_add(&t, br * d, sizeof(float));
  w->acc = attn_ws_add(&t, br * dvp, sizeof(float));
  w->accm = attn_ws_add(&t, br * dvp, sizeof(float));
  w->vec = attn_ws_add(&t, 5 * br, sizeof(float)); /* m l lse alpha lm */
  w->lo = attn_ws_add(&t, br, sizeof(int64_t));
  w->hi = attn_ws_add(&t, br, sizeof(int64_t));
  w->runs = attn_ws_add(&t, (size_t)pl->tiles.cap, sizeof(attn_tile_run));
  w->slot = t.off;
  /* Groups only pay where one head's K and V outgrow L2, and never at the
   * price of idle threads: at least 4 items per thread. */
  const int64_t nqt = (pr->sq_max + (int64_t)br - 1) / (int64_t)br;
  w->nslot = pr->sk_max >= QGROUP_MIN_KEYS ? QGROUP : 1;
  while (w->nslot > 1 &&
         pr->batch * pr->hq * ((nqt + w->nslot - 1) / w->nslot) < 4 * threads)
    w->nslot /= 2;
  w->parts = 1;
  w->nsplit = 0;
  w->plast = 0;
  if (w->nslot == 1 && found && found->threads == threads) {
    w->parts = found->parts;
    w->nsplit = found->nsplit;
    w->plast = found->plast;
  } else if (w->nslot == 1) {
    split_for(pl, pr->batch * pr->hq * nqt, threads, w);
  }
  const size_t key_bytes = (d + dvp) * sizeof(float);
  w->chunk_kt = (int64_t)ATTN_MAX((size_t)1, QCHUNK_BYTES / (key_bytes * bc));
  const size_t slots = attn_ws_mul(&t, w->slot, (size_t)w->nslot);
  attn_ws u = {slots, t.overflow};
  w->s = attn_ws_add(&u, br * bc, sizeof(float));
  w->crun = attn_ws_add(&u, (size_t)pl->tiles.cap, sizeof(attn_tile_run));
  if (u.overflow)
    return ATTN_ERR_OVERFLOW;
  size_t off = u.off;
  w->threads = threads;
  /* Many (sequence, kv head) groups: every thread packs the groups it works
   * on into its own buffers and never waits for the others. One group with
   * short keys (at most FWD_PRIVATE_KEYS) and a small team: the same,
   * each thread packing the one group (a copy costs about threads / seq_q
   * of the call's work): on the Zen 2 EPYC, one head of 128-512 queries
   * at d 64 on two threads ran 8-14% faster than with the shared
   * copy's barrier and its lines in the other core's cache (d 128 and
   * causal within 1-2.5%, seq 1024 the same; docs/decisions.md). Few
   * groups or long keys: the team packs one shared copy, then splits the
   * tiles. */
  size_t pack;
  if (__builtin_add_overflow(w->kpack, w->vpack, &pack))
    return ATTN_ERR_OVERFLOW;
  const int64_t groups = pr->batch * pr->hk;
  const int one_short =
      threads <= FWD_PRIVATE_THREADS && pr->sk_max <= FWD_PRIVATE_KEYS;
  w->private_pack =
      threads == 1 || ((groups >= 2 || one_short) &&
                       pack <= ((size_t)64 << 20) / (size_t)threads);
  size_t all;
  if (w->private_pack) {
    if (__builtin_add_overflow(off, pack, &off))
      return ATTN_ERR_OVERFLOW;
    pack = 0;
  }
  w->per_thread = off;
  if (!mul_ok(off, (size_t)threads, &all) ||
      __builtin_add_overflow(all, pack, &all) ||
      __builtin_add_overflow(all, w->counters, &all) ||
      __builtin_add_overflow(all, (size_t)ALIGN, &all))
    return ATTN_ERR_OVERFLOW;
  w->total = all;
  return ATTN_OK;
}

/* What handing work to the pool's workers costs, in FLOPs of one core's
 * tile work: waking them, their first touch of the inputs, the wait for the
 * last one. 30-50 us when this was first set (4 MFLOP), before waits inside
 * a call spun instead of sleeping; 5-15 us on the 2-core Zen 2 and Intel
 * machines of bench/RESULTS.md (2026-12-03, then 1 MFLOP); 3-4 us on the
 * Zen 3 EPYC of 2026-12-05, where one core does about 55 GFLOP/s on such
 * tiles: two balanced heads of 48 queries took 0.029 ms on one thread and
 * 0.018 on two (docs/decisions.md). */
#define ATTN_TEAM_FLOPS 3e5

/* A thread count given in the call (num_threads > 0) is taken as given,
 * one thread per row range of a query tile at most (split_for then picks
 * the ranges for that team). Otherwise (the context's count) the team size
 * with the shortest estimated time, plus ATTN_TEAM_FLOPS when there is
 * more than one thread: for a team of up to FWD_SPLIT_TEAM with fewer than
 * FWD_SPLIT_TILES query tiles a thread (split_for's calls), its run as
 * split_for would split it, simulated (split_makespan, in FLOPs: 2 (d +
 * dv) a row's key), so that one head of 64 queries, or a causal one of
 * 128, can be shared by two threads (its tiles split into row ranges);
 * otherwise the tiles dealt out evenly (ceil(tiles / n) per thread, each a
 * full row of keys, half for a causal mask), in the same units as the one
 * thread's run. The split found for the chosen team comes back in *found
 * (its threads field 0 when none was simulated) for layout to take instead
 * of searching again. Small calls (one head of 32 queries) so run on the
 * calling thread alone; the result is the same for any team (threads.c). */
static int threads_for(const attn_plan *pl, ws_layout *found) {
  const attn_problem *pr = &pl->pr;
  const attn_kernel *k = pl->k.fwd;
  const int n = ATTN_MIN(pl->threads, ATTN_MAX_THREADS);
  const int64_t tiles = pr->batch * pr->hq * ((pr->sq_max + k->br - 1) / k->br);
  memset(found, 0, sizeof *found); /* threads 0: nothing found */
  if (pr->p->num_threads > 0)
    return (int)ATTN_MAX(ATTN_MIN((int64_t)n, tiles * FWD_MAX_PARTS), 1);
  const double tile = 2.0 * k->br * (double)pr->sk_max *
                      (double)(pr->d + pr->dv) *
                      (pr->p->causal != ATTN_CAUSAL_NONE ? 0.5 : 1.0);
  int best = 1;
  double best_cost = (double)tiles * tile;
  const int sim = !attn_plan_bf16(pl) && tiles < FWD_SPLIT_TILES * (int64_t)n;
  const double flops = 2.0 * (double)(pr->d + pr->dv);
  ws_layout w;
  memset(&w, 0, sizeof w);
  w.parts = 1;
  w.nslot = 1;
  if (sim) {
    double work;
    best_cost = split_makespan(pr, k, &w, 1, &work) * flops;
  }
  const double one = best_cost; /* the one thread's run */
  for (int m = 2; m <= n && m <= tiles * (sim ? FWD_MAX_PARTS : 1); m++) {
    double cost;
    if (sim && m <= FWD_SPLIT_TEAM && tiles < FWD_SPLIT_TILES * (int64_t)m) {
      ws_layout c = w;
      double work;
      split_for(pl, tiles, m, &c);
      cost = split_makespan(pr, k, &c, m, &work) * flops;
      c.threads = m;
      if (cost + ATTN_TEAM_FLOPS < best_cost)
        *found = c;
    } else if (m <= tiles) { /* whole tiles dealt out evenly */
      cost = (double)((tiles + m - 1) / m) * one / (double)tiles;
    } else {
      break;
    }
    cost += ATTN_TEAM_FLOPS;
    if (cost < best_cost)
      best = m, best_cost = cost;
  }
  return best;
}

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
  ws_layout found;
  const int threads = threads_for(pl, &found);
  st = layout(pl, threads, &found, w);
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
