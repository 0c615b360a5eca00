/* The forward's workspace layout and team (fwd_layout.c): the sizes of
 * the workspace's pieces, how many threads a call takes and how a team
 * with few query tiles splits them into items (fwd.c runs the items). */
#ifndef ATTN_FWD_LAYOUT_H
#define ATTN_FWD_LAYOUT_H

#include "kernels/plan.h"

#include <stddef.h>
#include <stdint.h>

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

/* The items of one head with nqt query tiles (nslot == 1). Tiles are
 * claimed from the last to the first (under causal masks the last see the
 * most keys, and longest-first keeps the team busy until the end), or,
 * with plast, the last tile after tile 0 (without a mask a short last tile
 * is the cheapest: claimed last it fills the gap). The last nsplit tiles
 * of that order are split into `parts` row ranges each: ranges of
 * ceil(rows / parts) rows rounded up to the micro-kernel's, the last range
 * of the tile first. */
static inline int64_t head_items(const ws_layout *w, int64_t nqt) {
  const int64_t ns = ATTN_MIN(w->nsplit, nqt);
  return nqt - ns + ns * w->parts;
}

/* Item u of a head: its tile *qt and the rows [*off, *off + return) of
 * that tile it covers (0 rows: nothing to do); sq: the sequence's queries. */
static inline int head_item(const ws_layout *w, int64_t nqt, int64_t u, int mr,
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

/* The plan's workspace layout and team: the thread count (the call's, or
 * the one the cost model picks), the split for few query tiles, the
 * workspace's pieces. ATTN_ERR_OVERFLOW if its size overflows. */
attn_status attn_fwd_layout(const attn_plan *pl, ws_layout *w);

#endif
