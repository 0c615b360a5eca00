/*
 * ring_plan.c - the part of a ring call that happens before any ring
 * traffic: this rank's checks, one MPI_Allgather of every rank's checks,
 * options and slice length (so every rank reaches the same verdict, never
 * a hang), the layout, and which (query slice, key slice) pairs are visible
 * and therefore how far each K/V slice has to travel.
 */
#include "ring_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double ring_now(void) { return MPI_Wtime(); }

void attn_ring_opts_init(attn_ring_opts *o) {
  if (o == NULL)
    return;
  memset(o, 0, sizeof *o);
  o->layout = ATTN_RING_CONTIGUOUS;
}

/* Chunk c of 2R chunks of S tokens (c in 64 bits: 2R - 1 - r overflowed
 * int for R > INT_MAX / 2, found by fuzz/ring_fuzz.c). */
static void zz_chunk(int64_t S, int R, int64_t c, int64_t *start,
                     int64_t *len) {
  const int64_t n = 2 * (int64_t)R, base = S / n, rem = S % n;
  *start = c * base + (c < rem ? c : rem);
  *len = base + (c < rem ? 1 : 0);
}

attn_status attn_ring_partition(attn_ring_layout layout, int64_t seq_len,
                                int ranks, int rank, int64_t start[2],
                                int64_t len[2], int *n_ranges) {
  if (start == NULL || len == NULL || n_ranges == NULL)
    return ATTN_ERR_NULL_POINTER;
  if (seq_len < 0 || ranks < 1 || rank < 0 || rank >= ranks)
    return ATTN_ERR_INVALID_ARGUMENT;
  if (layout == ATTN_RING_CONTIGUOUS) {
    const int64_t base = seq_len / ranks, rem = seq_len % ranks;
    start[0] = rank * base + (rank < rem ? rank : rem);
    len[0] = base + (rank < rem ? 1 : 0);
    start[1] = start[0] + len[0];
    len[1] = 0;
    *n_ranges = 1;
    return ATTN_OK;
  }
  if (layout == ATTN_RING_ZIGZAG) {
    zz_chunk(seq_len, ranks, rank, &start[0], &len[0]);
    zz_chunk(seq_len, ranks, 2 * (int64_t)ranks - 1 - rank, &start[1], &len[1]);
    *n_ranges = 2;
    return ATTN_OK;
  }
  return ATTN_ERR_INVALID_ARGUMENT;
}

/* ---------------------------------------------------------------------- */
/* Messages and agreement                                                 */
/* ---------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
say(char *msg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, RING_MSG, fmt, ap);
  va_end(ap);
}

typedef struct ring_verdict {
  int32_t status;
  char msg[RING_MSG];
} ring_verdict;

/* Every rank makes the same collective calls whatever failed where (a rank
 * whose allocation failed must not call another collective than the
 * others: MPI would match them wrongly or wait forever), and none of them
 * needs the heap: the lowest failing rank is found by one reduction and
 * its status and reason broadcast from it. */
attn_status ring_agree(ring_plan *plan, attn_status st, const char *msg) {
  int first = st != ATTN_OK ? plan->rank : plan->nranks, lowest = 0;
  MPI_Allreduce(&first, &lowest, 1, MPI_INT, MPI_MIN, plan->comm);
  if (lowest >= plan->nranks)
    return ATTN_OK;
  ring_verdict v;
  memset(&v, 0, sizeof v);
  if (plan->rank == lowest) {
    v.status = (int32_t)st;
    snprintf(v.msg, sizeof v.msg, "%s", msg ? msg : attn_strerror(st));
  }
  MPI_Bcast(&v, (int)sizeof v, MPI_BYTE, lowest, plan->comm);
  v.msg[RING_MSG - 1] = '\0';
  say(plan->msg, "rank %d: %s", lowest, v.msg);
  return (attn_status)v.status;
}

void ring_report(const ring_plan *plan, const attn_params *local) {
  if (local == NULL || local->error_message == NULL ||
      local->error_message_size == 0)
    return;
  snprintf(local->error_message, local->error_message_size, "ring: %s",
           plan->msg);
}

/* ---------------------------------------------------------------------- */
/* What every rank must agree on                                          */
/* ---------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
  const unsigned char *c = data;
  for (size_t i = 0; i < n; i++) {
    h ^= c[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static int64_t hash_of(const void *data, size_t n) {
  if (data == NULL)
    return 0;
  return (int64_t)(fnv(0xcbf29ce484222325ull, data, n) | 1);
}

static int64_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (int64_t)u;
}

enum {
  SIG_BATCH,
  SIG_HQ,
  SIG_HKV,
  SIG_D,
  SIG_DV,
  SIG_DTQ,
  SIG_DTK,
  SIG_DTV,
  SIG_CAUSAL,
  SIG_WL,
  SIG_WR,
  SIG_PREFIX,
  SIG_SCALE,
  SIG_SOFTCAP,
  SIG_QOFF,
  SIG_KOFF,
  SIG_LAYOUT,
  SIG_VARLEN,
  SIG_CU,
  SIG_KVLENS,
  SIG_ALIBI,
  SIG_QOFFS,
  SIG_KOFFS,
  SIG_REL,
  SIG_BUCKETS,
  SIG_MAXDIST,
  SIG_BIDIR,
  SIG_SINKS,
  SIG_DSINKS,
  SIG_DREL,
  SIG_N
};

static const char *const sig_names[SIG_N] = {"batch",
                                             "heads_q",
                                             "heads_kv",
                                             "head_dim",
                                             "head_dim_v",
                                             "q dtype",
                                             "k dtype",
                                             "v dtype",
                                             "causal",
                                             "window_left",
                                             "window_right",
                                             "prefix_len",
                                             "scale",
                                             "softcap",
                                             "q_pos_offset",
                                             "k_pos_offset",
                                             "layout",
                                             "varlen_batch",
                                             "cu_seqlens",
                                             "kv_lens",
                                             "alibi_slopes",
                                             "q_pos_offsets",
                                             "k_pos_offsets",
                                             "rel_bias",
                                             "rel_buckets",
                                             "rel_max_distance",
                                             "rel_bidirectional",
                                             "sinks",
                                             "dsinks (set or not)",
                                             "drel_bias (set or not)"};

typedef struct ring_info {
  int64_t status;
  int64_t n;
  int64_t sig[SIG_N];
  char msg[RING_MSG];
} ring_info;

static int dtype_ok(attn_dtype t) {
  return t == ATTN_DTYPE_F32 || t == ATTN_DTYPE_BF16 || t == ATTN_DTYPE_F16;
}

/* Per-sequence (ndocs) array lengths of p. */
static int64_t docs_of(const attn_params *p) {
  return p->cu_seqlens_q != NULL ? p->varlen_batch : p->q.shape[0];
}

/* This rank's own checks (no communication). */
static attn_status local_checks(const attn_params *p, const attn_ring_opts *o,
                                int backward, char *msg) {
  if (o->layout != ATTN_RING_CONTIGUOUS && o->layout != ATTN_RING_ZIGZAG) {
    say(msg, "unknown layout %d", (int)o->layout);
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (p->q.data == NULL || p->k.data == NULL || p->v.data == NULL ||
      p->o.data == NULL) {
    say(msg, "q, k, v and o are required");
    return ATTN_ERR_NULL_POINTER;
  }
  if (backward &&
      (p->lse == NULL || p->dout.data == NULL || p->dq.data == NULL ||
       p->dk.data == NULL || p->dv.data == NULL)) {
    say(msg, "the backward needs lse, dout, dq, dk and dv");
    return ATTN_ERR_NULL_POINTER;
  }
  const attn_tensor *ts[] = {&p->q,    &p->k,  &p->v,  &p->o,
                             &p->dout, &p->dq, &p->dk, &p->dv};
  const char *names[] = {"q", "k", "v", "o", "dout", "dq", "dk", "dv"};
  for (int i = 0; i < (backward ? 8 : 4); i++) {
    if (!dtype_ok(ts[i]->dtype)) {
      say(msg,
          "%s: dtype %d not supported (f32, bf16, f16; no quantised "
          "K/V over the ring)",
          names[i], (int)ts[i]->dtype);
      return ATTN_ERR_INVALID_DTYPE;
    }
    for (int a = 0; a < 4; a++) {
      if (ts[i]->shape[a] < (a == 1 ? 0 : 1) || ts[i]->stride[a] < 0) {
        say(msg, "%s: bad shape or stride on axis %d", names[i], a);
        return ATTN_ERR_INVALID_SHAPE;
      }
    }
  }
  const int64_t n = p->q.shape[1];
  if (p->k.shape[1] != n || p->v.shape[1] != n || p->o.shape[1] != n ||
      (backward && (p->dout.shape[1] != n || p->dq.shape[1] != n ||
                    p->dk.shape[1] != n || p->dv.shape[1] != n))) {
    say(msg,
        "q, k, v, o (and the gradients) must hold the same %" PRId64
        " tokens of the sequence (self-attention)",
        n);
    return ATTN_ERR_INVALID_SHAPE;
  }
  if (p->bias.data != NULL || p->mask.data != NULL ||
      p->compiled_mask != NULL) {
    say(msg, "bias and mask tensors (and compiled masks) are not supported "
             "over the ring");
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (p->dropout_p != 0.0f) {
    say(msg, "dropout is not supported over the ring");
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (p->global_count != 0 || p->sparse_kind != ATTN_SPARSE_NONE ||
      p->block_mask.data != NULL || p->score_mod != NULL ||
      p->mask_mod != NULL) {
    say(msg, "sparse patterns (global tokens, strided/fixed, block masks) "
             "and score/mask functions are not supported over the ring");
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (backward && p->dbias.data != NULL) {
    say(msg, "dbias is not supported over the ring");
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if ((p->cu_seqlens_q == NULL) != (p->cu_seqlens_k == NULL)) {
    say(msg, "cu_seqlens_q and cu_seqlens_k must be given together");
    return ATTN_ERR_INVALID_SEQLENS;
  }
  if (p->cu_seqlens_q != NULL) {
    if (p->varlen_batch < 1 || p->q.shape[0] != 1) {
      say(msg, "packed sequences need varlen_batch >= 1 and batch 1");
      return ATTN_ERR_INVALID_SEQLENS;
    }
    if (memcmp(p->cu_seqlens_q, p->cu_seqlens_k,
               (size_t)(p->varlen_batch + 1) * sizeof(int32_t)) != 0) {
      say(msg, "cu_seqlens_q and cu_seqlens_k must be equal (the ring "
               "splits one packed sequence of self-attention)");
      return ATTN_ERR_INVALID_SEQLENS;
    }
  }
  /* The slice as a call of its own: the pair calls see only the ring's
   * own buffers for o (forward), dq, dk and dv, and none of sinks, dsinks,
   * drel_bias, so o and the gradients against q, k, v (shapes, dtypes),
   * outputs over inputs or over each other, NaN / +inf sinks, dsinks
   * without sinks are checked here, by attn_forward/backward_check (found
   * by fuzz/ring_fuzz.c: such calls returned ATTN_OK, ring_store read past
   * its accumulator for an o with more heads, wrote outputs over inputs).
   * What describes the whole sequence (kv_lens, cu_seqlens and the
   * per-sequence offsets) is left to the global checks and the pair
   * calls. An empty slice writes nothing. */
  if (n > 0) {
    attn_params s = *p;
    s.kv_lens = NULL;
    s.cu_seqlens_q = s.cu_seqlens_k = NULL;
    s.varlen_batch = 0;
    s.q_pos_offsets = s.k_pos_offsets = NULL;
    s.error_message = msg;
    s.error_message_size = RING_MSG;
    const attn_status st =
        backward ? attn_backward_check(&s) : attn_forward_check(&s);
    if (st != ATTN_OK)
      return st;
  }
  return ATTN_OK;
}

static void signature(const attn_params *p, const attn_ring_opts *o,
                      int64_t *s) {
  const int64_t docs = docs_of(p), hq = p->q.shape[2];
  s[SIG_BATCH] = p->q.shape[0];
  s[SIG_HQ] = hq;
  s[SIG_HKV] = p->k.shape[2];
  s[SIG_D] = p->q.shape[3];
  s[SIG_DV] = p->v.shape[3];
  s[SIG_DTQ] = p->q.dtype;
  s[SIG_DTK] = p->k.dtype;
  s[SIG_DTV] = p->v.dtype;
  s[SIG_CAUSAL] = p->causal;
  s[SIG_WL] = p->window_left;
  s[SIG_WR] = p->window_right;
  s[SIG_PREFIX] = p->prefix_len;
  s[SIG_SCALE] = bits_of(p->scale);
  s[SIG_SOFTCAP] = bits_of(p->softcap);
  s[SIG_QOFF] = p->q_pos_offset;
  s[SIG_KOFF] = p->k_pos_offset;
  s[SIG_LAYOUT] = o->layout;
  s[SIG_VARLEN] = p->cu_seqlens_q ? p->varlen_batch : 0;
  s[SIG_CU] =
      hash_of(p->cu_seqlens_q, p->cu_seqlens_q ? (size_t)(docs + 1) * 4 : 0);
  s[SIG_KVLENS] = hash_of(p->kv_lens, (size_t)docs * 4);
  s[SIG_ALIBI] = hash_of(p->alibi_slopes, (size_t)hq * 4);
  s[SIG_QOFFS] = hash_of(p->q_pos_offsets, (size_t)docs * 8);
  s[SIG_KOFFS] = hash_of(p->k_pos_offsets, (size_t)docs * 8);
  s[SIG_REL] = p->rel_bias && p->rel_buckets > 0
                   ? hash_of(p->rel_bias, (size_t)(p->rel_buckets * hq) * 4)
                   : (p->rel_bias ? 1 : 0);
  s[SIG_BUCKETS] = p->rel_bias ? p->rel_buckets : 0;
  s[SIG_MAXDIST] = p->rel_bias ? p->rel_max_distance : 0;
  s[SIG_BIDIR] = p->rel_bias ? (p->rel_bidirectional != 0) : 0;
  s[SIG_SINKS] = hash_of(p->sinks, (size_t)hq * 4);
  s[SIG_DSINKS] = p->dsinks != NULL;
  s[SIG_DREL] = p->drel_bias != NULL;
}

/* ---------------------------------------------------------------------- */
/* Geometry of a pair                                                     */
/* ---------------------------------------------------------------------- */

static int64_t clamp64(int64_t x, int64_t lo, int64_t hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

int ring_pair(const ring_plan *plan, const ring_seg *qs, const ring_seg *ks,
              attn_params *out, ring_pair_arrays *arrays) {
  const attn_params *p = &plan->p;
  if (qs->len == 0 || ks->len == 0)
    return 0;
  const int varlen = p->cu_seqlens_q != NULL;
  const int top_left = p->causal == ATTN_CAUSAL_TOP_LEFT;
  const int causal = p->causal != ATTN_CAUSAL_NONE;
  int visible = 0;
  for (int64_t b = 0; b < plan->ndocs; b++) {
    const int64_t ds = varlen ? p->cu_seqlens_q[b] : 0;
    const int64_t L = varlen ? p->cu_seqlens_q[b + 1] - ds : plan->S;
    const int64_t kvlen = p->kv_lens ? p->kv_lens[b] : L;
    const int64_t uq =
        p->q_pos_offset + (p->q_pos_offsets ? p->q_pos_offsets[b] : 0);
    const int64_t uk =
        p->k_pos_offset + (p->k_pos_offsets ? p->k_pos_offsets[b] : 0);
    const int64_t qlo = qs->start > ds ? qs->start : ds;
    const int64_t qhi =
        qs->start + qs->len < ds + L ? qs->start + qs->len : ds + L;
    const int64_t klo = ks->start > ds ? ks->start : ds;
    const int64_t khi =
        ks->start + ks->len < ds + L ? ks->start + ks->len : ds + L;
    const int64_t nq = qhi > qlo ? qhi - qlo : 0;
    const int64_t nk = khi > klo ? khi - klo : 0;
    const int64_t qin = qlo - ds, kin = klo - ds;
    const int64_t nk_eff = clamp64(kvlen - kin, 0, nk);
    /* the alignment's query position of the sequence's row qin + i */
    const int64_t shift = (top_left ? 0 : kvlen - L) + uq;
    if (arrays != NULL) {
      arrays->qoffs[b] = qin + shift - nk_eff + nq;
      arrays->koffs[b] = kin + uk;
      arrays->kvl[b] = (int32_t)nk_eff;
      if (varlen) {
        arrays->cuq[b] = (int32_t)clamp64(ds - qs->start, 0, qs->len);
        arrays->cuk[b] = (int32_t)clamp64(ds - ks->start, 0, ks->len);
        arrays->cuq[b + 1] = (int32_t)clamp64(ds + L - qs->start, 0, qs->len);
        arrays->cuk[b + 1] = (int32_t)clamp64(ds + L - ks->start, 0, ks->len);
      }
    }
    if (nq == 0 || nk_eff == 0 || visible)
      continue;
    const int64_t amin = qin + shift, amax = qin + nq - 1 + shift;
    const int64_t kmin = kin + uk, kmax = kin + nk_eff - 1 + uk;
    int hidden = 0;
    if (causal && kmin > amax)
      hidden = 1;
    if (p->window_left >= 0 && kmax < amin - p->window_left)
      hidden = 1;
    if (p->window_right >= 0 && kmin > amax + p->window_right)
      hidden = 1;
    if (p->prefix_len >= 0 && kmin >= p->prefix_len && kmin > amax)
      hidden = 1;
    if (!hidden)
      visible = 1;
  }
  if (out != NULL) {
    *out = *p;
    out->causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    out->q_pos_offset = 0;
    out->k_pos_offset = 0;
    out->q_pos_offsets = arrays ? arrays->qoffs : NULL;
    out->k_pos_offsets = arrays ? arrays->koffs : NULL;
    out->kv_lens = arrays ? arrays->kvl : NULL;
    out->cu_seqlens_q = varlen && arrays ? arrays->cuq : NULL;
    out->cu_seqlens_k = varlen && arrays ? arrays->cuk : NULL;
    out->sinks = NULL;
    out->dsinks = NULL;
    out->drel_bias = NULL;
    out->dropout_p = 0.0f;
    out->workspace = NULL;
    out->workspace_size = 0;
    out->error_message = NULL;
    out->error_message_size = 0;
    out->lse = NULL;
    memset(&out->dbias, 0, sizeof out->dbias);
  }
  return visible;
}

attn_status ring_pair_arrays_alloc(const ring_plan *plan, ring_pair_arrays *a) {
  const size_t n = (size_t)plan->ndocs;
  a->qoffs = malloc(n * sizeof *a->qoffs);
  a->koffs = malloc(n * sizeof *a->koffs);
  a->kvl = malloc(n * sizeof *a->kvl);
  a->cuq = malloc((n + 1) * sizeof *a->cuq);
  a->cuk = malloc((n + 1) * sizeof *a->cuk);
  if (!a->qoffs || !a->koffs || !a->kvl || !a->cuq || !a->cuk) {
    ring_pair_arrays_free(a);
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  return ATTN_OK;
}

void ring_pair_arrays_free(ring_pair_arrays *a) {
  free(a->qoffs);
  free(a->koffs);
  free(a->kvl);
  free(a->cuq);
  free(a->cuk);
  memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------------- */
/* The plan                                                               */
/* ---------------------------------------------------------------------- */

/* Checks that need every rank's data: the same on every rank. */
static attn_status global_checks(ring_plan *plan, const ring_info *all,
                                 const attn_ring_opts *o) {
  const int R = plan->nranks;
  for (int r = 1; r < R; r++) {
    for (int k = 0; k < SIG_N; k++) {
      if (all[r].sig[k] != all[0].sig[k]) {
        say(plan->msg,
            "rank %d: %s differs from rank 0's (every option but the "
            "slices must be the same on every rank)",
            r, sig_names[k]);
        return k <= SIG_DV ? ATTN_ERR_INVALID_SHAPE : ATTN_ERR_INVALID_ARGUMENT;
      }
    }
  }
  int64_t S = 0;
  for (int r = 0; r < R; r++)
    S += all[r].n;
  plan->S = S;
  const attn_params *p = &plan->p;
  if (o->layout == ATTN_RING_ZIGZAG) {
    for (int r = 0; r < R; r++) {
      int64_t st[2], ln[2];
      int nr;
      attn_ring_partition(ATTN_RING_ZIGZAG, S, R, r, st, ln, &nr);
      if (all[r].n != ln[0] + ln[1]) {
        say(plan->msg,
            "rank %d holds %" PRId64 " tokens; the zig-zag layout of %" PRId64
            " tokens on %d ranks gives it %" PRId64 " (attn_ring_partition)",
            r, all[r].n, S, R, ln[0] + ln[1]);
        return ATTN_ERR_INVALID_SHAPE;
      }
    }
  }
  if (S == 0) {
    say(plan->msg, "the sequence is empty on every rank");
    return ATTN_ERR_INVALID_SHAPE;
  }
  const int varlen = p->cu_seqlens_q != NULL;
  if (varlen) {
    const int32_t *cu = p->cu_seqlens_q;
    if (cu[0] != 0) {
      say(plan->msg, "cu_seqlens must start at 0 (got %d)", (int)cu[0]);
      return ATTN_ERR_INVALID_SEQLENS;
    }
    for (int64_t b = 0; b < p->varlen_batch; b++) {
      if (cu[b + 1] < cu[b]) {
        say(plan->msg,
            "cu_seqlens must be non-decreasing (at index %" PRId64 ")", b + 1);
        return ATTN_ERR_INVALID_SEQLENS;
      }
    }
    if (cu[p->varlen_batch] > S) {
      say(plan->msg,
          "cu_seqlens ends at %d, beyond the %" PRId64
          " tokens of the whole sequence",
          (int)cu[p->varlen_batch], S);
      return ATTN_ERR_INVALID_SEQLENS;
    }
  }
  if (p->kv_lens != NULL) {
    for (int64_t b = 0; b < plan->ndocs; b++) {
      const int64_t cap =
          varlen ? p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b] : S;
      if (p->kv_lens[b] < 0 || p->kv_lens[b] > cap) {
        say(plan->msg,
            "kv_lens[%" PRId64 "] = %d must be in 0..%" PRId64
            " (key counts of the whole sequence)",
            b, (int)p->kv_lens[b], cap);
        return ATTN_ERR_INVALID_SEQLENS;
      }
      if (p->causal == ATTN_CAUSAL_TOP_LEFT && p->kv_lens[b] != cap &&
          (p->alibi_slopes != NULL || p->rel_bias != NULL)) {
        say(plan->msg,
            "top-left causal with kv_lens below the sequence length and "
            "ALiBi or T5 is not supported over the ring (use bottom-right)");
        return ATTN_ERR_INVALID_ARGUMENT;
      }
    }
  }
  return ATTN_OK;
}

/* Layout, visibility of every pair, chain lengths. */
static attn_status build(ring_plan *plan, const ring_info *all,
                         const attn_ring_opts *o) {
  const int R = plan->nranks;
  plan->ranks = calloc((size_t)R, sizeof *plan->ranks);
  plan->need = calloc((size_t)R * (size_t)R, 1);
  plan->chain = calloc((size_t)R, sizeof *plan->chain);
  if (!plan->ranks || !plan->need || !plan->chain)
    return ATTN_ERR_OUT_OF_MEMORY;
  int64_t start = 0;
  plan->max_n = 0;
  for (int r = 0; r < R; r++) {
    ring_rank *rk = &plan->ranks[r];
    rk->n = all[r].n;
    if (rk->n > plan->max_n)
      plan->max_n = rk->n;
    if (o->layout == ATTN_RING_CONTIGUOUS) {
      rk->nseg = 1;
      rk->seg[0].start = start;
      rk->seg[0].len = rk->n;
      rk->seg[0].off = 0;
      start += rk->n;
    } else {
      int64_t st[2], ln[2];
      int nr;
      attn_ring_partition(ATTN_RING_ZIGZAG, plan->S, R, r, st, ln, &nr);
      rk->nseg = 2;
      for (int i = 0; i < 2; i++) {
        rk->seg[i].start = st[i];
        rk->seg[i].len = ln[i];
        rk->seg[i].off = i == 0 ? 0 : ln[0];
      }
    }
  }
  plan->max_t = 0;
  for (int s = 0; s < R; s++) {
    plan->chain[s] = 0;
    for (int t = 0; t < R; t++) {
      const int r = (s + t) % R;
      const ring_rank *qr = &plan->ranks[r], *kr = &plan->ranks[s];
      int vis = 0;
      for (int i = 0; i < qr->nseg && !vis; i++)
        for (int j = 0; j < kr->nseg && !vis; j++)
          vis = ring_pair(plan, &qr->seg[i], &kr->seg[j], NULL, NULL);
      plan->need[(size_t)r * (size_t)R + (size_t)s] = (unsigned char)vis;
      if (vis)
        plan->chain[s] = t;
    }
    if (plan->chain[s] > plan->max_t)
      plan->max_t = plan->chain[s];
  }
  return ATTN_OK;
}

attn_status ring_plan_make(ring_plan *plan, MPI_Comm comm,
                           const attn_ring_opts *opts, const attn_params *local,
                           size_t params_size, int backward) {
  memset(plan, 0, sizeof *plan);
  plan->comm = MPI_COMM_NULL;
  plan->backward = backward;
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (!inited || finalized) {
    say(plan->msg, "MPI is not initialised (or already finalised)");
    ring_report(plan, local);
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (comm == MPI_COMM_NULL) {
    say(plan->msg, "the communicator is MPI_COMM_NULL");
    ring_report(plan, local);
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  MPI_Comm_dup(comm, &plan->comm);
  MPI_Comm_size(plan->comm, &plan->nranks);
  MPI_Comm_rank(plan->comm, &plan->rank);

  attn_ring_opts o;
  attn_ring_opts_init(&o);
  if (opts != NULL)
    o = *opts;
  ring_info mine;
  memset(&mine, 0, sizeof mine);
  attn_status st = ATTN_OK;
  attn_params_init(&plan->p);
  if (local == NULL) {
    st = ATTN_ERR_NULL_POINTER;
    say(mine.msg, "attn_params is NULL");
  } else if (params_size != sizeof(attn_params) &&
             params_size != ATTN_PARAMS_SIZE_0_4 &&
             params_size != ATTN_PARAMS_SIZE_0_3 &&
             params_size != ATTN_PARAMS_SIZE_0_2 &&
             params_size != ATTN_PARAMS_SIZE_0_1) {
    st = ATTN_ERR_ABI;
    say(mine.msg, "attn_params size %zu is not one this library knows",
        params_size);
  } else {
    memcpy(&plan->p, local, params_size);
    st = local_checks(&plan->p, &o, backward, mine.msg);
  }
  if (st == ATTN_OK) {
    signature(&plan->p, &o, mine.sig);
    mine.n = plan->p.q.shape[1];
  }
  mine.status = st;
  /* the gather's buffer on every rank, or none gathers (ring_agree) */
  ring_info *all = calloc((size_t)plan->nranks, sizeof *all);
  const attn_status got = ring_agree(
      plan, all ? ATTN_OK : ATTN_ERR_OUT_OF_MEMORY, "out of memory (the plan)");
  if (got != ATTN_OK) {
    free(all);
    ring_report(plan, local);
    return got;
  }
  MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine,
                MPI_BYTE, plan->comm);
  st = ATTN_OK;
  for (int r = 0; r < plan->nranks && st == ATTN_OK; r++) {
    if (all[r].status != ATTN_OK) {
      st = (attn_status)all[r].status;
      all[r].msg[RING_MSG - 1] = '\0';
      say(plan->msg, "rank %d: %s", r, all[r].msg);
    }
  }
  if (st == ATTN_OK) {
    const attn_params *p = &plan->p;
    plan->batch = p->q.shape[0];
    plan->ndocs = docs_of(p);
    plan->hq = p->q.shape[2];
    plan->hkv = p->k.shape[2];
    plan->d = p->q.shape[3];
    plan->dv = p->v.shape[3];
    plan->esk = attn_dtype_size(p->k.dtype);
    plan->esv = attn_dtype_size(p->v.dtype);
    st = global_checks(plan, all, &o);
  }
  if (st == ATTN_OK) /* a rank may fail alone: every rank agrees */
    st = ring_agree(plan, build(plan, all, &o), "out of memory (the plan)");
  free(all);
  if (st != ATTN_OK)
    ring_report(plan, local);
  return st;
}

void ring_plan_free(ring_plan *plan) {
  free(plan->ranks);
  free(plan->need);
  free(plan->chain);
  if (plan->comm != MPI_COMM_NULL)
    MPI_Comm_free(&plan->comm);
  plan->ranks = NULL;
  plan->need = NULL;
  plan->chain = NULL;
}
