/* The forward's workspace layout and team (fwd_layout.h): which split of
 * the query tiles a team runs (split_for), how many threads a call takes
 * (threads_for), the workspace's pieces (layout). Split from fwd.c. */
#include "kernels/fwd_layout.h"

#include <stdatomic.h>
#include <string.h>

#define ALIGN 64

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

#ifndef QCHUNK_KIB
#define QCHUNK_KIB 256
#endif
#define QCHUNK_BYTES ((size_t)QCHUNK_KIB << 10)

static int mul_ok(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
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

attn_status attn_fwd_layout(const attn_plan *pl, ws_layout *w) {
  ws_layout found;
  const int threads = threads_for(pl, &found);
  return layout(pl, threads, &found, w);
}
