/* bwd_reduce.c - the backward's sums over its work items, in a fixed
 * order (bitwise the same for every thread count): dQ from the chunks' dQ
 * partials (phase B, overlapping phase A where it can), drel_bias from the
 * items' partials, dsinks over the rows. See bwd.c for the phases. */
#include "kernels/bwd_job.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Phase B: dQ = scale * sum of the chunks' partials, in chunk order       */
/* ---------------------------------------------------------------------- */
/* dQ of rows i0..i1-1 of sequence b, query head h: scale times the sum
 * of the chunks' partials in chunk order, those flagged in dqf (acc: dp
 * floats of scratch). */
static void dq_rows(bwd_job *job, const attn_seq *sq, int64_t nch, int64_t h,
                    int64_t i0, int64_t i1, float *acc) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const bwd_layout *w = &job->w;
  const int64_t dp = w->dp, r0 = seq_row0(p, sq);
  for (int64_t i = i0; i < i1; i++) {
    memset(acc, 0, sizeof(float) * (size_t)dp);
    for (int64_t c = 0; c < nch; c++) {
      /* a chunk no block of this row reached holds nothing: adding its
       * zeros would give the same bits (the sum starts at +0) */
      if (!job->dqf[(c * pr->hq + h) * w->tq + r0 + i])
        continue;
      const float *x = job->dqc + ((c * pr->hq + h) * w->tq + r0 + i) * dp;
      for (int64_t e = 0; e < dp; e++)
        acc[e] += x[e];
    }
    for (int64_t e = 0; e < dp; e++)
      acc[e] *= pr->scale;
    attn_store_row(acc, pr->d,
                   attn_elem(&p->dq, sq->q_bat, sq->q_off + i, h, 0),
                   p->dq.dtype, p->dq.stride[3]);
  }
}

/* Phase A's last item of (sequence b, kv head g), whichever thread runs
 * it, sums dQ of the group's query heads at once (dq_rows), while the
 * other threads go on with phase A: this memory-bound pass overlaps the
 * compute-bound one instead of following it. The counter's atomic add
 * orders every item's partials before the sum. Only when there are at
 * least as many (sequence, kv head) pairs as threads (overlap_b): with
 * fewer (MQA, few kv heads on many threads) one thread would sum a large
 * share of dQ alone at the end, so phase B keeps it, split over rows. */
void attn_bwd_group_done(bwd_job *job, int64_t b, int64_t g, int64_t nch,
                         char *ws) {
  const attn_problem *pr = job->pr;
  if (!job->overlap_b ||
      atomic_fetch_add(&job->done[b * pr->hk + g], 1) + 1 != nch)
    return;
  attn_seq sq;
  attn_problem_seq(pr, b, &sq);
  float *acc = (float *)(ws + job->w.tmp);
  for (int64_t hh = 0; hh < pr->group; hh++)
    dq_rows(job, &sq, nch, g * pr->group + hh, 0, sq.sq, acc);
}

/* Phase B: dQ of what attn_bwd_group_done did not sum: every sequence without
 * overlap_b, else those phase A had no item for (no key: zeros). */
void attn_bwd_phase_b(bwd_job *job, int tid, int nthreads) {
  const attn_problem *pr = job->pr;
  const int64_t br = job->k->br;
  float *acc = (float *)(job->mem + job->w.scratch +
                         (size_t)tid * job->w.per_thread + job->w.tmp);
  int64_t it = 0;
  for (int64_t b = 0; b < pr->batch; b++) {
    const int64_t nch = (job->item_base[b + 1] - job->item_base[b]) / pr->hk;
    if (nch > 0 && job->overlap_b)
      continue; /* done by attn_bwd_group_done */
    attn_seq sq;
    attn_problem_seq(pr, b, &sq);
    for (int64_t h = 0; h < pr->hq; h++)
      for (int64_t i0 = 0; i0 < sq.sq; i0 += br, it++)
        if (it % nthreads == tid)
          dq_rows(job, &sq, nch, h, i0, ATTN_MIN(sq.sq, i0 + br), acc);
  }
}

/* drel_bias[bucket][h] = the phase-A items' partials summed in item order
 * (sequence, chunk): one head per thread at a time. */
void attn_bwd_phase_rel(bwd_job *job, int tid, int nthreads) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const int64_t nb = p->rel_buckets, hk = pr->hk, group = pr->group;
  for (int64_t h = tid; h < pr->hq; h += nthreads) {
    const int64_t g = h / group, hh = h % group;
    for (int64_t bk = 0; bk < nb; bk++) {
      float acc = 0.0f;
      for (int64_t b = 0; b < pr->batch; b++) {
        const int64_t nch = (job->item_base[b + 1] - job->item_base[b]) / hk;
        for (int64_t c = 0; c < nch; c++) {
          const int64_t it = job->item_base[b] + c * hk + g;
          acc += job->rel[(it * group + hh) * nb + bk];
        }
      }
      p->drel_bias[bk * pr->hq + h] = acc;
    }
  }
}

/* dsinks[h] = -sum_i exp(sink - lse_i) D_i over every row of head h, in
 * row order, in double (a sum over batch x rows): one head per thread. A
 * row without query (lse -inf: padding) adds nothing; with no sink
 * (-inf) the gradient is 0. */
void attn_bwd_phase_sinks(bwd_job *job, int tid, int nthreads) {
  const attn_problem *pr = job->pr;
  const attn_params *p = pr->p;
  const int64_t tqp = job->w.tqp;
  for (int64_t h = tid; h < pr->hq; h += nthreads) {
    const float sink = p->sinks ? p->sinks[h] : -INFINITY;
    double acc = 0.0;
    for (int64_t r = 0; r < tqp && sink > -INFINITY; r++) {
      const float lse = job->l2[h * tqp + r];
      if (lse == -INFINITY)
        continue;
      acc -= exp((double)sink - (double)lse) * (double)job->dd[h * tqp + r];
    }
    p->dsinks[h] = (float)acc;
  }
}
