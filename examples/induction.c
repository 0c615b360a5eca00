/*
 * induction.c - train one causal attention layer with plain SGD, in C, on a
 * task that needs attention: induction (copying).
 *
 * Each sequence is a random arrangement of L distinct tokens followed by the
 * same L tokens again:
 *
 *     x = a b c d e f g h | a b c d e f g h          (vocab V, L = 8)
 *
 * At every position t of the second half the target is the token that
 * followed the previous occurrence of x[t] (at t = L + i it is x[i + 1]). No
 * fixed-position rule can predict it better than chance (1/V): the layer has
 * to find the earlier occurrence and copy its successor.
 *
 * The model (shapes per sequence, T = 2L):
 *
 *     e[t]   = [onehot(x[t]), onehot(x[t-1])]          (T, 2V)  inputs
 *     Q, K, V = e Wq, e Wk, e Wv                       (T, dh)  learned
 *     A      = causal attention(Q, K, V)               (T, dh)  attn_forward
 *     logits = A Wo                                    (T, V)   learned
 *
 * The "previous token" half of e is the positional information a single
 * layer needs: a query made from x[t] can match a key made from x[j-1], so
 * position j = (previous occurrence of x[t]) + 1 is found, and its value
 * (made from x[j]) is the answer. Gradients of the cross-entropy flow through
 * attn_backward into Wq, Wk, Wv; Wo gets its gradient directly. Plain C
 * matmuls, no BLAS.
 *
 * Prints loss and accuracy; exits 0 when the loss fell by at least half and
 * the final accuracy is at least 0.9 (chance: 1/V), else 1.
 *
 *     induction [steps]
 */
#include <attn.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 8 /* tokens                      */
#define HALF 8  /* L: distinct tokens per half */
#define T (2 * HALF)
#define E (2 * VOCAB) /* input features         */
#define DH 16         /* attention head dim     */
#define BATCH 32      /* sequences per SGD step */

static uint64_t rng_state = 0x1234567887654321ull;
static double urand(void) { /* xorshift64*, uniform [0, 1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}
static float nrand(void) {
  double u = urand() + 1e-12, v = urand();
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* c[m][n] (+)= a[m][k] b[k][n], with optional transposes (row-major). */
static void matmul(const float *a, int ta, const float *b, int tb, float *c,
                   int m, int n, int k, int accumulate) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      float s = accumulate ? c[i * n + j] : 0.0f;
      for (int x = 0; x < k; x++)
        s += (ta ? a[x * m + i] : a[i * k + x]) *
             (tb ? b[j * k + x] : b[x * n + j]);
      c[i * n + j] = s;
    }
}

typedef struct model {
  float wq[E * DH], wk[E * DH], wv[E * DH], wo[DH * VOCAB];
} model;

static void check(attn_status st, const char *what) {
  if (st != ATTN_OK) {
    fprintf(stderr, "induction: %s: %s\n", what, attn_strerror(st));
    exit(1);
  }
}

/* Wq, Wk, Wv, Wo: normal, standard deviation 0.3. */
static void init_model(model *m) {
  for (int i = 0; i < E * DH; i++) {
    m->wq[i] = 0.3f * nrand();
    m->wk[i] = 0.3f * nrand();
    m->wv[i] = 0.3f * nrand();
  }
  for (int i = 0; i < DH * VOCAB; i++)
    m->wo[i] = 0.3f * nrand();
}

/* activations: [BATCH][T][...] (bshd with one head) */
typedef struct acts {
  int tok[BATCH][T];
  float x[BATCH * T * E], q[BATCH * T * DH], k[BATCH * T * DH],
      v[BATCH * T * DH], o[BATCH * T * DH], lse[BATCH * T],
      logits[BATCH * T * VOCAB], dlog[BATCH * T * VOCAB], dout[BATCH * T * DH],
      dq[BATCH * T * DH], dk[BATCH * T * DH], dv[BATCH * T * DH];
} acts;

/* The attention layer's parameters, on a's buffers. */
static void bind_params(attn_params *p, acts *a) {
  attn_params_init(p);
  p->q = attn_tensor_bshd(a->q, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->k = attn_tensor_bshd(a->k, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->v = attn_tensor_bshd(a->v, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->o = attn_tensor_bshd(a->o, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->dout = attn_tensor_bshd(a->dout, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->dq = attn_tensor_bshd(a->dq, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->dk = attn_tensor_bshd(a->dk, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->dv = attn_tensor_bshd(a->dv, ATTN_DTYPE_F32, BATCH, T, 1, DH);
  p->lse = a->lse;
  p->causal = ATTN_CAUSAL_BOTTOM_RIGHT; /* seq_q = seq_k: same as top-left */
  p->num_threads = 1;
}

/* A fresh batch: tokens (a random permutation of the vocabulary, twice) and
 * their input features. */
static void fresh_batch(acts *a) {
  memset(a->x, 0, sizeof a->x);
  for (int b = 0; b < BATCH; b++) {
    int perm[VOCAB];
    for (int i = 0; i < VOCAB; i++)
      perm[i] = i;
    for (int i = VOCAB - 1; i > 0; i--) {
      int j = (int)(urand() * (i + 1)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    for (int t = 0; t < T; t++) {
      a->tok[b][t] = perm[t % HALF];
      float *e = a->x + (b * T + t) * E;
      e[a->tok[b][t]] = 1.0f;
      if (t > 0)
        e[VOCAB + a->tok[b][t - 1]] = 1.0f;
    }
  }
}

/* Q, K, V, attention, logits. */
static void forward(const model *m, acts *a, const attn_params *p) {
  matmul(a->x, 0, m->wq, 0, a->q, BATCH * T, DH, E, 0);
  matmul(a->x, 0, m->wk, 0, a->k, BATCH * T, DH, E, 0);
  matmul(a->x, 0, m->wv, 0, a->v, BATCH * T, DH, E, 0);
  check(attn_forward(NULL, p), "attn_forward");
  matmul(a->o, 0, m->wo, 0, a->logits, BATCH * T, VOCAB, DH, 0);
}

/* Cross-entropy on the second half (t = L .. 2L-2, target x[t-L+1]): the
 * mean loss, the accuracy (*acc) and the logits' gradient (dlog). */
static double cross_entropy(acts *a, double *acc) {
  const int counted = BATCH * (HALF - 1);
  int correct = 0;
  double loss = 0;
  memset(a->dlog, 0, sizeof a->dlog);
  for (int b = 0; b < BATCH; b++)
    for (int t = HALF; t < T - 1; t++) {
      const float *z = a->logits + (b * T + t) * VOCAB;
      float *dz = a->dlog + (b * T + t) * VOCAB;
      const int target = a->tok[b][t - HALF + 1];
      float mx = z[0];
      int arg = 0;
      for (int c = 1; c < VOCAB; c++)
        if (z[c] > mx)
          mx = z[c], arg = c;
      double sum = 0;
      for (int c = 0; c < VOCAB; c++)
        sum += exp(z[c] - mx);
      loss += -(z[target] - mx - log(sum));
      correct += arg == target;
      for (int c = 0; c < VOCAB; c++)
        dz[c] = (float)(exp(z[c] - mx) / sum) / (float)counted;
      dz[target] -= 1.0f / (float)counted;
    }
  loss /= counted;
  *acc = (double)correct / counted;
  return loss;
}

/* The weights' gradients (g) from dlog, through attn_backward. */
static void backward(const model *m, model *g, acts *a, const attn_params *p) {
  /* dWo = O^T dZ, dO = dZ Wo^T */
  matmul(a->o, 1, a->dlog, 0, g->wo, DH, VOCAB, BATCH * T, 0);
  matmul(a->dlog, 0, m->wo, 1, a->dout, BATCH * T, DH, VOCAB, 0);
  check(attn_backward(NULL, p), "attn_backward");
  matmul(a->x, 1, a->dq, 0, g->wq, E, DH, BATCH * T, 0); /* dWq = X^T dQ */
  matmul(a->x, 1, a->dk, 0, g->wk, E, DH, BATCH * T, 0);
  matmul(a->x, 1, a->dv, 0, g->wv, E, DH, BATCH * T, 0);
}

/* plain SGD */
static void sgd(model *m, const model *g, float lr) {
  for (int i = 0; i < E * DH; i++) {
    m->wq[i] -= lr * g->wq[i];
    m->wk[i] -= lr * g->wk[i];
    m->wv[i] -= lr * g->wv[i];
  }
  for (int i = 0; i < DH * VOCAB; i++)
    m->wo[i] -= lr * g->wo[i];
}

int main(int argc, char **argv) {
  const int steps = argc > 1 ? atoi(argv[1]) : 600;
  const float lr = 0.5f;
  model m, g;
  init_model(&m);
  static acts a;
  attn_params p;
  bind_params(&p, &a);

  double first_loss = -1, loss = 0, acc = 0;
  for (int step = 0; step <= steps; step++) {
    fresh_batch(&a);
    forward(&m, &a, &p);
    loss = cross_entropy(&a, &acc);
    if (first_loss < 0)
      first_loss = loss;
    if (step % 100 == 0 || step == steps)
      printf("step %4d  loss %.4f  accuracy %.3f\n", step, loss, acc);
    if (step == steps)
      break;
    backward(&m, &g, &a, &p);
    sgd(&m, &g, lr);
  }
  const int ok = loss <= 0.5 * first_loss && acc >= 0.9;
  printf("loss %.4f -> %.4f, final accuracy %.3f (chance %.3f): %s\n",
         first_loss, loss, acc, 1.0 / VOCAB, ok ? "learned" : "FAILED");
  return ok ? 0 : 1;
}
