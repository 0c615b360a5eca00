/*
 * test_spare.c - the context's spare workspace (src/core/workspace.c): a
 * call whose workspace the library allocates (8 to 64 MiB) leaves it to the
 * next call under the same context. What the spare holds must never show
 * in a result:
 *   - the same backward gives bitwise the same gradients on a fresh
 *     context, after the spare was dirtied by another problem (other data,
 *     a smaller workspace, one with NaN inputs), and with a caller
 *     workspace filled with NaN bytes;
 *   - calls racing on one context (four threads, the spare taken and
 *     returned concurrently) give those bits too;
 *   - a spare too small for the next call is replaced, not overrun.
 * Freeing the contexts frees their spares: the sanitizer build's leak
 * checker reads this program too.
 */
#include "attn.h"
#include "test_common.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

typedef struct prob {
  int64_t h, s, d;
  float *q, *k, *v, *o, *dout, *lse, *dq, *dk, *dv;
} prob;

static float *filled(size_t n, tc_rng *r) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; x && i < n; i++)
    x[i] = (float)((double)tc_next(r) / 18446744073709551616.0 - 0.5);
  return x;
}

static int prob_init(prob *p, int64_t h, int64_t s, int64_t d, uint64_t seed) {
  tc_rng r = {seed};
  const size_t n = (size_t)(h * s * d);
  p->h = h, p->s = s, p->d = d;
  p->q = filled(n, &r), p->k = filled(n, &r), p->v = filled(n, &r);
  p->dout = filled(n, &r);
  p->o = calloc(n, sizeof(float)), p->lse = calloc((size_t)(h * s), 4);
  p->dq = calloc(n, sizeof(float)), p->dk = calloc(n, sizeof(float));
  p->dv = calloc(n, sizeof(float));
  return p->q && p->k && p->v && p->dout && p->o && p->lse && p->dq && p->dk &&
         p->dv;
}

static void prob_free(prob *p) {
  free(p->q), free(p->k), free(p->v), free(p->dout), free(p->o);
  free(p->lse), free(p->dq), free(p->dk), free(p->dv);
}

/* The params of p's backward, writing into dq, dk, dv (p's own if NULL). */
static void prob_params(const prob *p, attn_params *a, float *dq, float *dk,
                        float *dv) {
  attn_params_init(a);
  const int64_t h = p->h, s = p->s, d = p->d;
  a->q = attn_tensor_bshd(p->q, ATTN_DTYPE_F32, 1, s, h, d);
  a->k = attn_tensor_bshd(p->k, ATTN_DTYPE_F32, 1, s, h, d);
  a->v = attn_tensor_bshd(p->v, ATTN_DTYPE_F32, 1, s, h, d);
  a->o = attn_tensor_bshd(p->o, ATTN_DTYPE_F32, 1, s, h, d);
  a->lse = p->lse;
  a->dout = attn_tensor_bshd(p->dout, ATTN_DTYPE_F32, 1, s, h, d);
  a->dq = attn_tensor_bshd(dq ? dq : p->dq, ATTN_DTYPE_F32, 1, s, h, d);
  a->dk = attn_tensor_bshd(dk ? dk : p->dk, ATTN_DTYPE_F32, 1, s, h, d);
  a->dv = attn_tensor_bshd(dv ? dv : p->dv, ATTN_DTYPE_F32, 1, s, h, d);
}

static int same(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Backward of p under ctx into fresh buffers; whether they equal ref. */
static int backward_matches(attn_context *ctx, const prob *p, const float *rq,
                            const float *rk, const float *rv, void *ws,
                            size_t ws_size) {
  const size_t n = (size_t)(p->h * p->s * p->d);
  float *dq = malloc(n * 4), *dk = malloc(n * 4), *dv = malloc(n * 4);
  int ok = dq && dk && dv;
  if (ok) {
    attn_params a;
    prob_params(p, &a, dq, dk, dv);
    a.workspace = ws;
    a.workspace_size = ws_size;
    ok = attn_backward(ctx, &a) == ATTN_OK && same(dq, rq, n) &&
         same(dk, rk, n) && same(dv, rv, n);
  }
  free(dq), free(dk), free(dv);
  return ok;
}

typedef struct racer {
  attn_context *ctx;
  const prob *p;
  int ok;
} racer;

static void *race(void *arg) {
  racer *r = (racer *)arg;
  r->ok = 1;
  for (int i = 0; i < 4; i++)
    r->ok &=
        backward_matches(r->ctx, r->p, r->p->dq, r->p->dk, r->p->dv, NULL, 0);
  return NULL;
}

int main(void) {
  attn_context_options o;
  attn_context_options_init(&o);
  o.num_threads = 2;
  attn_context *ctx = NULL, *fresh = NULL;
  CHECK(attn_context_create(&ctx, &o) == ATTN_OK, "context");
  CHECK(attn_context_create(&fresh, &o) == ATTN_OK, "second context");
  prob big, other, tiny;
  memset(&big, 0, sizeof big), memset(&other, 0, sizeof other);
  memset(&tiny, 0, sizeof tiny);
  const int made = prob_init(&big, 16, 1024, 64, 1) &&
                   prob_init(&other, 16, 896, 64, 2) &&
                   prob_init(&tiny, 2, 64, 32, 3);
  CHECK(made, "inputs");
  if (!ctx || !fresh || !made)
    goto done;
  for (size_t i = 0; i < (size_t)(other.h * other.s * other.d); i += 97)
    other.q[i] = NAN; /* rows of NaN: what they leave must not matter */

  attn_params a;
  prob_params(&big, &a, NULL, NULL, NULL);
  size_t need = 0;
  CHECK(attn_backward_workspace_size(ctx, &a, &need) == ATTN_OK, "size");
  CHECK(need >= ((size_t)8 << 20) && need <= ((size_t)64 << 20),
        "the case's workspace (%zu bytes) goes through the spare", need);
  attn_params b2;
  prob_params(&other, &b2, NULL, NULL, NULL);
  size_t need2 = 0;
  CHECK(attn_backward_workspace_size(ctx, &b2, &need2) == ATTN_OK &&
            need2 >= ((size_t)8 << 20) && need2 < need,
        "the smaller case's workspace (%zu bytes) goes through the spare too",
        need2);
  const prob *all[3] = {&big, &other, &tiny};
  for (int i = 0; i < 3; i++) { /* forwards: o and lse; reference grads */
    attn_params f;
    prob_params(all[i], &f, NULL, NULL, NULL);
    CHECK(attn_forward(fresh, &f) == ATTN_OK, "forward %d", i);
    CHECK(attn_backward(fresh, &f) == ATTN_OK, "reference backward %d", i);
  }

  /* The spare dirtied by other problems, then the reference problem. */
  CHECK(backward_matches(ctx, &big, big.dq, big.dk, big.dv, NULL, 0),
        "first call on the context");
  CHECK(backward_matches(ctx, &other, other.dq, other.dk, other.dv, NULL, 0),
        "a smaller problem with NaN rows, on the big call's spare");
  CHECK(backward_matches(ctx, &big, big.dq, big.dk, big.dv, NULL, 0),
        "after the NaN problem used the spare");
  CHECK(backward_matches(ctx, &tiny, tiny.dq, tiny.dk, tiny.dv, NULL, 0),
        "a workspace below the spare's range");
  CHECK(backward_matches(ctx, &big, big.dq, big.dk, big.dv, NULL, 0),
        "again after the small call");

  /* A spare too small: other's (smaller) workspace first, on a new context. */
  attn_context *grow = NULL;
  CHECK(attn_context_create(&grow, &o) == ATTN_OK, "third context");
  if (grow) {
    CHECK(backward_matches(grow, &other, other.dq, other.dk, other.dv, NULL, 0),
          "smaller first");
    CHECK(backward_matches(grow, &big, big.dq, big.dk, big.dv, NULL, 0),
          "then larger: the spare is replaced");
    CHECK(backward_matches(grow, &big, big.dq, big.dk, big.dv, NULL, 0),
          "and kept");
    attn_context_free(grow);
  }

  /* A caller workspace of NaN bytes: the same bits. */
  void *ws = malloc(need);
  if (ws) {
    memset(ws, 0xff, need);
    CHECK(backward_matches(ctx, &big, big.dq, big.dk, big.dv, ws, need),
          "caller workspace of NaN bytes");
    free(ws);
  }

  /* Four threads on one context: the spare taken and given back at once. */
  pthread_t t[4];
  racer r[4];
  int started = 0;
  for (int i = 0; i < 4; i++) {
    r[i].ctx = ctx;
    r[i].p = &big;
    r[i].ok = 0;
    if (pthread_create(&t[i], NULL, race, &r[i]) == 0)
      started++;
    else
      break;
  }
  for (int i = 0; i < started; i++) {
    pthread_join(t[i], NULL);
    CHECK(r[i].ok, "racing thread %d", i);
  }
  CHECK(started == 4, "threads started: %d", started);

done:
  prob_free(&big), prob_free(&other), prob_free(&tiny);
  attn_context_free(ctx);
  attn_context_free(fresh);
  printf("spare: %ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
