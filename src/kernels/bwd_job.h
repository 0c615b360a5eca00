/* bwd_job.h - the backward's shared state (private to bwd.c, which runs
 * phases 0, A and C, bwd_blocks.c, which packs key tiles and describes
 * blocks for them, and bwd_reduce.c, which sums dQ, drel_bias and
 * dsinks): the workspace layout, the job, and the item arithmetic they
 * use. See bwd.c for the phases. */
#ifndef ATTN_KERNELS_BWD_JOB_H
#define ATTN_KERNELS_BWD_JOB_H

#include "kernels/plan.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define ATTN_BWD_CHUNKS 8 /* most key chunks (dQ partial copies) */
/* Phase-A items a sequence aims at: two per online CPU, 4 to 32 */
#define ATTN_BWD_ITEMS(cpus) ATTN_MIN(ATTN_MAX(2 * (int64_t)(cpus), 4), 32)

static inline size_t round_up(size_t x, size_t a) {
  return (x + a - 1) / a * a;
}

typedef struct bwd_layout {
  int64_t tq;         /* rows of q's seq axis times its batch        */
  int64_t tqp;        /* tq + br zero rows (reads past a tile end)   */
  int64_t dp, dvp;    /* head dims padded to the vector width        */
  int64_t chunks;     /* dQ partial copies (<= ATTN_BWD_CHUNKS)      */
  int64_t aim;        /* phase-A items a sequence aims at (seq_chunks) */
  int64_t items_c;    /* dbias items                                 */
  int64_t items_a;    /* phase-A items (sequence, kv head, chunk)    */
  size_t qs, dos, l2; /* offsets of the shared pieces (bytes)        */
  size_t dd, dqc, dqf, base, done;
  size_t rel;        /* drel_bias partials [items_a][group][buckets] */
  size_t per_thread; /* one thread's scratch                        */
  size_t kt, vt, krow, dk, dv, dkm, dvm, s, ds, g, lo, hi, tmp, dt5, touched;
  size_t kslot;    /* bytes of one key tile's pieces (kt .. dt5, bf)     */
  int kp;          /* key tiles per pass over the query tiles (>= 1)     */
  int64_t nqt_max; /* most query tiles of a sequence                 */
  size_t z;        /* dropout's factors [br][bc] (empty without dropout) */
  size_t gm;       /* score_mod's derivative [br][bc] (empty without it) */
  size_t tiles;    /* offset of the call's own tile lists (if not compiled) */
  size_t bf;       /* the bf16 kernel's operands (bwd_kernels.h), or empty */
  size_t rows16;   /* bf16 kernel: [group][nqt_max] query tiles' Q and dO
                      (prep_rows), or empty (rows16_on = 0)            */
  int rows16_on;
  size_t scratch; /* offset of thread 0's scratch                */
  size_t total;
  int threads;
} bwd_layout;

static inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Key chunks of a sequence with sk keys and hk kv heads: enough phase-A
 * items for the machine (aim items, ATTN_BWD_ITEMS of its CPUs, over the
 * sequence's kv heads), at most ATTN_BWD_CHUNKS and the key tiles. Each
 * chunk has its own f32 copy of the sequence's dQ, zeroed and summed once
 * per call, and converts its query tiles again: at h8 s512 d64, 4 chunks
 * rather than 1 made a bf16 backward 10% slower on 2 CPUs. A function of
 * the sequence, the model's head counts and the machine's CPU count only:
 * neither the call's thread count nor the rest of the batch changes the
 * sums. */
static inline int64_t seq_chunks(int64_t sk, int64_t bc, int64_t hk,
                                 int64_t aim) {
  const int64_t want = cdiv(aim, hk > 0 ? hk : 1);
  return ATTN_MIN(ATTN_MIN(cdiv(sk, bc), (int64_t)ATTN_BWD_CHUNKS), want);
}

typedef struct bwd_job {
  const attn_plan *pl;
  const attn_problem *pr;
  const attn_bwd_kernel *k;
  const attn_tiles *tiles; /* the mask's tile lists               */
  attn_tiles own;          /* the call's own, when not compiled   */
  bwd_layout w;
  char *mem;          /* aligned workspace                       */
  float *qs, *dos;    /* [hq][tqp][dp], [hq][tqp][dvp]           */
  float *l2, *dd;     /* [hq][tqp]: the forward's LSE, D          */
  float *dqc;         /* [chunks][hq][tq][dp]                    */
  uint8_t *dqf;       /* [chunks][hq][tq]: 1 where dqc holds a sum */
  float *rel;         /* [items_a][group][buckets] drel_bias partials */
  int64_t *item_base; /* [batch+1] first phase-A item of each sequence */
  atomic_llong *done; /* [batch][hk] phase-A items finished          */
  int overlap_b;      /* dQ sums in phase A (attn_bwd_group_done)     */
  int bf16;           /* k is the bf16 kernel: qs holds unscaled Q     */
  atomic_llong counter_a, counter_c;
} bwd_job;

/* First row of sequence sq in the [tq] row numbering. */
static inline int64_t seq_row0(const attn_params *p, const attn_seq *sq) {
  return sq->q_bat * p->q.shape[1] + sq->q_off;
}

/* Rows of padding after every buffer of bc key rows: the key-row loops of
 * the body run in steps of MR (at most 8), past bc when MR does not divide
 * it; those rows are computed and dropped. */
#define KEY_PAD 8

/* dP = dO V^T with bf16 dot products (in the bf16 kernel): both bf16. */
static inline int use_dp16(const attn_params *p) {
  return p->v.dtype == ATTN_DTYPE_BF16 && p->dout.dtype == ATTN_DTYPE_BF16;
}

/* bwd_blocks.c */
size_t attn_bwd_acc_rows(const attn_bwd_kernel *k, int nkeys);
void attn_bwd_pack_keys(const bwd_job *job, const attn_seq *sq, int64_t g,
                        int64_t j0, int nkeys, char *ws);
int attn_bwd_block_setup(const bwd_job *job, const attn_seq *sq, int64_t h,
                         int64_t i0, int rows, int64_t j0, int nkeys, char *ws,
                         attn_bblock *t);

/* bwd_reduce.c */
void attn_bwd_group_done(bwd_job *job, int64_t b, int64_t g, int64_t nch,
                         char *ws);
void attn_bwd_phase_b(bwd_job *job, int tid, int nthreads);
void attn_bwd_phase_rel(bwd_job *job, int tid, int nthreads);
void attn_bwd_phase_sinks(bwd_job *job, int tid, int nthreads);

#endif
