/*
 * Reference gradients for the tests: see oracle_bwd.h. Written for clarity:
 * one (sequence, head, query row) at a time, every rule spelled out, in a
 * real type R that is double (oracle_backward) or float (the naive f32
 * reference).
 */
#include "oracle_bwd.h"

#include "oracle.h"
#include "test_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t bias_index(const attn_tensor *t, int64_t b, int64_t h, int64_t i,
                          int64_t j) {
  const int64_t *s = t->shape;
  return ((((s[0] == 1 ? 0 : b) * s[1] + (s[1] == 1 ? 0 : h)) * s[2] +
           (s[2] == 1 ? 0 : i)) *
              s[3] +
          (s[3] == 1 ? 0 : j));
}

static int grads_alloc(const attn_params *p, oracle_grads *o) {
  memset(o, 0, sizeof *o);
  const int64_t hq = p->q.shape[2], hk = p->k.shape[2];
  o->n[0] = p->q.shape[0] * p->q.shape[1] * hq * p->q.shape[3];
  o->n[1] = p->k.shape[0] * p->k.shape[1] * hk * p->k.shape[3];
  o->n[2] = p->v.shape[0] * p->v.shape[1] * hk * p->v.shape[3];
  o->n[3] = p->dbias.data ? p->bias.shape[0] * p->bias.shape[1] *
                                p->bias.shape[2] * p->bias.shape[3]
                          : 0;
  for (int t = 0; t < 4; t++) {
    o->g[t] = calloc((size_t)o->n[t] + 1, sizeof(double));
    if (!o->g[t])
      return -1;
  }
  return 0;
}

void oracle_grads_free(oracle_grads *g) {
  for (int t = 0; t < 4; t++)
    free(g->g[t]);
  memset(g, 0, sizeof *g);
}

/* The whole computation, in type R; naive = 1 reads O and LSE from p. */
#define DEFINE_BACKWARD(NAME, R, EXP, TANH, LOG, naive)                        \
  static int NAME(const attn_params *p, oracle_grads *out, double *loss) {     \
    const int64_t hq = p->q.shape[2], hk = p->k.shape[2];                      \
    const int64_t d = p->q.shape[3], dv = p->v.shape[3];                       \
    const int64_t S0 = p->q.shape[1], K0 = p->k.shape[1];                      \
    const R scale = p->scale == 0.0f ? (R)(1.0 / sqrt((double)d)) : p->scale;  \
    const R cap = p->softcap;                                                  \
    int64_t maxk = 1;                                                          \
    if (out && grads_alloc(p, out) != 0)                                       \
      return -1;                                                               \
    for (int64_t b = 0; b < oracle_num_seqs(p); b++) {                         \
      oracle_seq_geom g;                                                       \
      oracle_seq_geom_get(p, b, &g);                                           \
      if (g.sk > maxk)                                                         \
        maxk = g.sk;                                                           \
    }                                                                          \
    R *s = malloc((size_t)maxk * sizeof(R));                                   \
    R *th = malloc((size_t)maxk * sizeof(R));                                  \
    R *pr = malloc((size_t)maxk * sizeof(R));                                  \
    R *qr = malloc((size_t)d * sizeof(R));                                     \
    R *dor = malloc((size_t)dv * sizeof(R));                                   \
    R *orow = malloc((size_t)dv * sizeof(R));                                  \
    R *dqr = malloc((size_t)d * sizeof(R));                                    \
    if (!s || !th || !pr || !qr || !dor || !orow || !dqr) {                    \
      free(s), free(th), free(pr), free(qr), free(dor), free(orow), free(dqr); \
      return -1;                                                               \
    }                                                                          \
    R *acc[4] = {0};                                                           \
    if (out)                                                                   \
      for (int t = 0; t < 4; t++) {                                            \
        acc[t] = calloc((size_t)out->n[t] + 1, sizeof(R));                     \
        if (!acc[t])                                                           \
          return -1;                                                           \
      }                                                                        \
    double total = 0.0;                                                        \
    for (int64_t b = 0; b < oracle_num_seqs(p); b++) {                         \
      oracle_seq_geom g;                                                       \
      oracle_seq_geom_get(p, b, &g);                                           \
      for (int64_t h = 0; h < hq; h++) {                                       \
        const int64_t kvh = h / (hq / hk);                                     \
        for (int64_t i = 0; i < g.sq; i++) {                                   \
          const int64_t qi = g.q0 + i;                                         \
          R m = -INFINITY, sum = 0;                                            \
          for (int64_t c = 0; c < d; c++)                                      \
            qr[c] = (R)oracle_tensor_get(&p->q, g.tb, qi, h, c);               \
          for (int64_t c = 0; c < dv; c++)                                     \
            dor[c] = (R)oracle_tensor_get(&p->dout, g.tb, qi, h, c);           \
          for (int64_t j = 0; j < g.sk; j++) {                                 \
            R x = 0;                                                           \
            s[j] = -INFINITY;                                                  \
            th[j] = 0;                                                         \
            if (!oracle_allowed(p, &g, h, i, j))                               \
              continue;                                                        \
            for (int64_t c = 0; c < d; c++)                                    \
              x +=                                                             \
                  qr[c] * (R)oracle_tensor_get(&p->k, g.tb, g.k0 + j, kvh, c); \
            x *= scale;                                                        \
            if (cap > 0) {                                                     \
              th[j] = TANH(x / cap);                                           \
              x = cap * th[j];                                                 \
            }                                                                  \
            if (p->alibi_slopes)                                               \
              x -= (R)p->alibi_slopes[h] * (R)llabs(i + g.sk - g.sq - j);      \
            if (p->bias.data)                                                  \
              x += (R)oracle_tensor_get(&p->bias, g.b, h, i, j);               \
            s[j] = x;                                                          \
            if (x > m)                                                         \
              m = x;                                                           \
          }                                                                    \
          if (m == -INFINITY)                                                  \
            continue; /* no key: zero gradients */                             \
          for (int64_t j = 0; j < g.sk; j++)                                   \
            if (s[j] != -INFINITY)                                             \
              sum += EXP(s[j] - m);                                            \
          R lse = m + LOG(sum);                                                \
          if (naive) {                                                         \
            const int64_t li =                                                 \
                p->cu_seqlens_q ? h * S0 + qi : (g.tb * hq + h) * S0 + i;      \
            lse = (R)p->lse[li];                                               \
          }                                                                    \
          for (int64_t j = 0; j < g.sk; j++)                                   \
            pr[j] = s[j] == -INFINITY ? 0 : EXP(s[j] - lse);                   \
          for (int64_t c = 0; c < dv; c++) {                                   \
            R o = 0;                                                           \
            if (naive)                                                         \
              o = (R)oracle_tensor_get(&p->o, g.tb, qi, h, c);                 \
            else                                                               \
              for (int64_t j = 0; j < g.sk; j++)                               \
                if (pr[j] != 0)                                                \
                  o += pr[j] *                                                 \
                       (R)oracle_tensor_get(&p->v, g.tb, g.k0 + j, kvh, c);    \
            orow[c] = o;                                                       \
          }                                                                    \
          R dd = 0;                                                            \
          for (int64_t c = 0; c < dv; c++)                                     \
            dd += dor[c] * orow[c];                                            \
          total += (double)dd;                                                 \
          if (!out)                                                            \
            continue;                                                          \
          for (int64_t c = 0; c < d; c++)                                      \
            dqr[c] = 0;                                                        \
          for (int64_t j = 0; j < g.sk; j++) {                                 \
            if (pr[j] == 0)                                                    \
              continue;                                                        \
            const int64_t kj = g.k0 + j;                                       \
            R dp = 0;                                                          \
            const int64_t vi = ((g.tb * K0 + kj) * hk + kvh) * dv;             \
            for (int64_t c = 0; c < dv; c++) {                                 \
              dp += dor[c] * (R)oracle_tensor_get(&p->v, g.tb, kj, kvh, c);    \
              acc[2][vi + c] += pr[j] * dor[c];                                \
            }                                                                  \
            R ds = pr[j] * (dp - dd);                                          \
            if (out->n[3])                                                     \
              acc[3][bias_index(&p->bias, g.b, h, i, j)] += ds;                \
            if (cap > 0)                                                       \
              ds *= 1 - th[j] * th[j];                                         \
            const int64_t ki = ((g.tb * K0 + kj) * hk + kvh) * d;              \
            for (int64_t c = 0; c < d; c++) {                                  \
              const R kc = (R)oracle_tensor_get(&p->k, g.tb, kj, kvh, c);      \
              dqr[c] += ds * kc;                                               \
              acc[1][ki + c] += scale * ds * qr[c];                            \
            }                                                                  \
          }                                                                    \
          const int64_t qo = ((g.tb * S0 + qi) * hq + h) * d;                  \
          for (int64_t c = 0; c < d; c++)                                      \
            acc[0][qo + c] = scale * dqr[c];                                   \
        }                                                                      \
      }                                                                        \
    }                                                                          \
    if (out)                                                                   \
      for (int t = 0; t < 4; t++) {                                            \
        for (int64_t x = 0; x < out->n[t]; x++) {                              \
          out->g[t][x] = (double)acc[t][x];                                    \
          if (fabs(out->g[t][x]) > out->gmax[t])                               \
            out->gmax[t] = fabs(out->g[t][x]);                                 \
        }                                                                      \
        free(acc[t]);                                                          \
      }                                                                        \
    free(s), free(th), free(pr), free(qr), free(dor), free(orow), free(dqr);   \
    if (loss)                                                                  \
      *loss = total;                                                           \
    return 0;                                                                  \
  }

DEFINE_BACKWARD(backward_f64, double, exp, tanh, log, 0)
DEFINE_BACKWARD(backward_f32, float, expf, tanhf, logf, 1)

int oracle_backward(const attn_params *p, oracle_grads *out) {
  return backward_f64(p, out, NULL);
}

int oracle_backward_f32(const attn_params *p, oracle_grads *out) {
  if (backward_f32(p, out, NULL) != 0)
    return -1;
  /* outputs rounded to their dtypes, as the kernel must store them */
  const attn_dtype dt[3] = {p->dq.dtype, p->dk.dtype, p->dv.dtype};
  for (int t = 0; t < 3; t++)
    for (int64_t x = 0; x < out->n[t]; x++)
      out->g[t][x] = oracle_round_to(dt[t], (float)out->g[t][x]);
  return 0;
}

double oracle_loss(const attn_params *p) {
  double l = 0.0;
  if (backward_f64(p, NULL, &l) != 0)
    return NAN;
  return l;
}
