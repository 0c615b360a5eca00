/*
 * test_encoder.c - the BERT encoder (src/model/bert.c) on the real
 * all-MiniLM-L6-v2 when it can be found (locate.h; exit 77 = skipped when
 * not): padding must not change an embedding (each text alone vs. all in
 * one padded batch), embeddings have unit length, and encoder_trace gives
 * Q, K and LSE whose recomputed attention rows sum to 1. Parity with
 * sentence-transformers is test_encoder_parity.py.
 */
#include "bert.h"
#include "locate.h"
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  ok ? passed++ : failed++;
}

static const char *texts[] = {
    "The quick brown fox jumps over the lazy dog.", "Hi", "",
    ("A much longer sentence, with punctuation; numbers like 3.14159 and "
     "accents (caf\xc3\xa9, na\xc3\xafve), which pads every shorter one."),
    "Stock markets fell sharply today."};
#define NT 5

static void test_padding(bert *m) {
  const int64_t H = bert_get_config(m)->hidden;
  float *batch = malloc(NT * H * sizeof *batch);
  float *alone = malloc(NT * H * sizeof *alone);
  char err[256];
  int ok = bert_embed(m, texts, NT, 0, batch, err, sizeof err) == 0;
  for (int i = 0; ok && i < NT; i++)
    ok = bert_embed(m, texts + i, 1, 0, alone + i * H, err, sizeof err) == 0;
  if (!ok) {
    printf("  %s\n", err);
    check(0, "bert_embed");
    return;
  }
  double worst = 0, norm_err = 0;
  for (int i = 0; i < NT; i++) {
    double nn = 0;
    for (int64_t j = 0; j < H; j++) {
      double d = fabs((double)batch[i * H + j] - alone[i * H + j]);
      worst = d > worst ? d : worst;
      nn += (double)batch[i * H + j] * batch[i * H + j];
    }
    norm_err = fmax(norm_err, fabs(sqrt(nn) - 1));
  }
  printf("  padding: max |batched - alone| = %.3g; max | |e| - 1 | = %.3g\n",
         worst, norm_err);
  /* the same arithmetic on the real rows: only the GEMMs' blocking may
   * differ with the row count, a few f32 roundings */
  check(worst <= 1e-5, "padding does not change any embedding");
  check(norm_err <= 1e-5, "embeddings have unit length");
  free(batch);
  free(alone);
}

static void test_trace(void) {
  model_trace t;
  char err[256];
  const char *s = "The cat sat on the mat.";
  if (encoder_trace(NULL, s, 0, &t, err, sizeof err) != 0) {
    printf("  %s\n", err);
    check(0, "encoder_trace");
    return;
  }
  check(t.n_layers == 6 && t.n_tokens == 9 && t.layers[0].heads_q == 12 &&
            t.layers[0].heads_kv == 12 && t.layers[0].head_dim == 32 &&
            t.layers[0].causal == 0 && strcmp(t.model, "encoder") == 0,
        "trace shapes: 6 layers, 12 heads of 32, 9 tokens");
  check(strcmp(t.tokens[0], "[CLS]") == 0 && strcmp(t.tokens[2], "cat") == 0 &&
            strcmp(t.tokens[8], "[SEP]") == 0,
        "trace tokens");
  double worst = 0;
  for (int64_t l = 0; l < t.n_layers; l++) {
    const model_trace_layer *y = &t.layers[l];
    const int64_t S = y->seq, NH = y->heads_q, D = y->head_dim;
    for (int64_t h = 0; h < NH; h++)
      for (int64_t i = 0; i < S; i++) {
        double sum = 0;
        for (int64_t j = 0; j < S; j++) {
          double dot = 0;
          for (int64_t k = 0; k < D; k++)
            dot +=
                (double)y->q[(i * NH + h) * D + k] * y->k[(j * NH + h) * D + k];
          sum += exp(y->scale * dot - y->lse[h * S + i]);
        }
        worst = fmax(worst, fabs(sum - 1));
      }
  }
  printf("  trace: max |sum_j p_ij - 1| = %.3g\n", worst);
  check(worst <= 1e-4, "rows recomputed from the trace's LSE sum to 1");
  model_trace_free(&t);
  check(encoder_trace("/nonexistent", s, 0, &t, err, sizeof err) == -1 &&
            t.layers == NULL && err[0],
        "encoder_trace with a bad path fails cleanly");
}

int main(void) {
  char dir[4096], err[512];
  if (model_locate(MODEL_ENCODER, NULL, dir, sizeof dir, err, sizeof err)) {
    printf("skipped: %s\n0 passed, 0 failed\n", err);
    return 77;
  }
  bert *m;
  if (bert_load(dir, &m, err, sizeof err) != 0) {
    printf("FAIL: bert_load: %s\n0 passed, 1 failed\n", err);
    return 1;
  }
  test_padding(m);
  bert_free(m);
  test_trace();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
