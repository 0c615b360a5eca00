/*
 * trained_trace.c - the models `attn train` wrote, as `attn show` needs
 * them (models.h): the encoder-decoder's three kinds of attention and the
 * ViT's, each kind a trace (trace.h) built from the trainers' probes
 * (train_ops.h: the queries and keys the kernel saw and every row's LSE).
 */
#include "models.h"

#include "attn.h"
#include "attn/io.h"
#include "encdec.h"
#include "vit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *default_path(const char *weights, const char *dflt) {
  return weights && weights[0] ? weights : dflt;
}

/* Copies the probes whose name contains kind (".self" of "enc.", ...) into
 * trace t, one layer each, in order. */
static int probes_to_trace(const train_attn_probe *p, int np,
                           const char *prefix, const char *suffix,
                           int key_tokens, model_trace *t, char *err,
                           size_t err_size) {
  int n = 0, first = -1;
  for (int k = 0; k < np; k++)
    if (strncmp(p[k].name, prefix, strlen(prefix)) == 0 &&
        strstr(p[k].name, suffix)) {
      n++;
      first = first < 0 ? k : first;
    }
  if (n == 0)
    return train_fail(err, err_size, "the checkpoint has no %s*%s layer",
                      prefix, suffix);
  const train_attn_probe *p0 = &p[first];
  if (model_trace_alloc_qk(t, n, p0->seq_q, p0->seq_k, key_tokens, p0->heads,
                           p0->heads, p0->head_dim, p0->causal) != 0)
    return train_fail(err, err_size, "out of memory (the trace)");
  int l = 0;
  for (int k = 0; k < np; k++) {
    if (strncmp(p[k].name, prefix, strlen(prefix)) != 0 ||
        !strstr(p[k].name, suffix))
      continue;
    const train_attn_probe *q = &p[k];
    model_trace_layer *y = &t->layers[l++];
    if (q->seq_q != y->seq || q->seq_k != y->seq_k || q->heads != y->heads_q ||
        q->head_dim != y->head_dim)
      return train_fail(err, err_size, "layer %s differs in shape", q->name);
    y->scale = q->scale;
    memcpy(y->q, q->q, (size_t)(q->seq_q * q->heads * q->head_dim) * 4);
    memcpy(y->k, q->k, (size_t)(q->seq_k * q->heads * q->head_dim) * 4);
    memcpy(y->lse, q->lse, (size_t)(q->heads * q->seq_q) * 4);
  }
  return 0;
}

static void free_probes(train_attn_probe *p, int np) {
  for (int k = 0; p && k < np; k++)
    train_attn_probe_free(&p[k]);
  free(p);
}

/* The digits of text (1 to TASK_NUM_SRC_MAX of them, nothing else). */
static int parse_number(const char *text, int64_t *n, char *err,
                        size_t err_size) {
  size_t len = strlen(text);
  if (len < 1 || len > TASK_NUM_SRC_MAX || strspn(text, "0123456789") != len)
    return train_fail(
        err, err_size,
        "encdec: give a number of 1 to %d digits (the model reads "
        "digits and writes English words), got '%.40s'",
        TASK_NUM_SRC_MAX, text);
  *n = strtoll(text, NULL, 10);
  return 0;
}

int encdec_traces(const char *weights, const char *text, int threads,
                  model_trace traces[3], char *words, size_t words_size,
                  char *err, size_t err_size) {
  for (int k = 0; k < 3; k++)
    memset(&traces[k], 0, sizeof traces[k]);
  if (words && words_size)
    words[0] = 0;
  int64_t number;
  if (!text || parse_number(text, &number, err, err_size) != 0)
    return text ? -1 : train_fail(err, err_size, "encdec: no number given");
  const char *path = default_path(weights, "train-encdec/model.safetensors");
  encdec *m = NULL;
  if (encdec_load(path, 1, threads, &m, err, err_size) != 0)
    return -1;
  int32_t src[TASK_NUM_SRC_MAX], out[TASK_NUM_TGT_MAX],
      dec_in[TASK_NUM_TGT_MAX];
  int32_t len = (int32_t)strlen(text);
  for (int32_t i = 0; i < TASK_NUM_SRC_MAX; i++) /* digits as the task */
    src[i] = i < len ? 1 + (text[i] - '0') : TASK_NUM_PAD;
  train_attn_probe *p = NULL;
  int np = 0, rc = -1;
  if (encdec_greedy(m, 1, src, &len, out, NULL, err, err_size) != 0)
    goto done;
  /* the decoder reads BOS and the words; row i produces out[i] */
  int64_t tl = 1;
  size_t used = 0;
  dec_in[0] = TASK_NUM_BOS;
  for (int64_t t = 0; t + 1 < TASK_NUM_TGT_MAX && out[t] != TASK_NUM_EOS; t++) {
    dec_in[tl++] = out[t];
    if (words && words_size > used + 1) {
      int k = snprintf(words + used, words_size - used, "%s%s", used ? " " : "",
                       task_numbers_token(out[t]));
      used += k > 0 ? (size_t)k : 0;
      used = used < words_size ? used : words_size - 1;
    }
  }
  if (encdec_probe(m, src, len, dec_in, tl, &p, &np, err, err_size) != 0)
    goto done;
  if (probes_to_trace(p, np, "enc.", ".self", 0, &traces[0], err, err_size) !=
          0 ||
      probes_to_trace(p, np, "dec.", ".self", 0, &traces[1], err, err_size) !=
          0 ||
      probes_to_trace(p, np, "dec.", ".cross", 1, &traces[2], err, err_size) !=
          0)
    goto done;
  snprintf(traces[0].model, sizeof traces[0].model, "encdec encoder self");
  snprintf(traces[1].model, sizeof traces[1].model, "encdec decoder self");
  snprintf(traces[2].model, sizeof traces[2].model, "encdec cross");
  char digit[2] = {0, 0};
  for (int64_t i = 0; i < len; i++) {
    digit[0] = text[i];
    if (model_trace_set_token(&traces[0], i, digit) != 0 ||
        model_trace_set_key_token(&traces[2], i, digit) != 0)
      goto oom;
  }
  for (int64_t i = 0; i < tl; i++) {
    /* decoder self-attention: the tokens it reads; cross-attention rows:
     * the token each row writes (its query read dec_in[i]) */
    const int32_t wrote = i + 1 < tl ? dec_in[i + 1] : TASK_NUM_EOS;
    if (model_trace_set_token(&traces[1], i, task_numbers_token(dec_in[i])) !=
            0 ||
        model_trace_set_token(&traces[2], i, task_numbers_token(wrote)) != 0)
      goto oom;
  }
  rc = 0;
  goto done;
oom:
  train_fail(err, err_size, "out of memory (token labels)");
done:
  if (rc != 0)
    for (int k = 0; k < 3; k++)
      model_trace_free(&traces[k]);
  free_probes(p, np);
  encdec_free(m);
  return rc;
}

/* The image of spec: an index into scikit-learn's digits, or a .npy of 64
 * values in 0..16 ([8, 8] or [64]; float32, int32 or int64). */
static int load_image(const char *spec, float pixels[64], int *label, char *err,
                      size_t err_size) {
  *label = -1;
  char *end = NULL;
  errno = 0;
  long long idx = strtoll(spec, &end, 10);
  if (spec[0] && end && !*end && !errno) {
    task_digits d;
    if (task_digits_load(NULL, &d, err, err_size) != 0)
      return -1;
    if (idx < 0 || idx >= d.n) {
      task_digits_free(&d);
      return train_fail(
          err, err_size,
          "vit: image index %lld out of range (scikit-learn's digits "
          "has %lld images: 0..%lld)",
          idx, (long long)d.n, (long long)d.n - 1);
    }
    memcpy(pixels, d.x + idx * 64, 64 * sizeof *pixels);
    *label = d.y[idx];
    task_digits_free(&d);
    return 0;
  }
  attn_npy a;
  char msg[512];
  if (attn_npy_read(spec, &a, msg, sizeof msg) != ATTN_OK)
    return train_fail(
        err, err_size,
        "vit: give an image index (0..1796 of scikit-learn's digits) "
        "or an 8x8 .npy; %s",
        msg);
  int ok = a.count == 64;
  for (int64_t i = 0; ok && i < 64; i++) {
    double v;
    switch (a.dtype) {
    case ATTN_NPY_F32:
      v = ((const float *)a.data)[i];
      break;
    case ATTN_NPY_I32:
      v = ((const int32_t *)a.data)[i];
      break;
    case ATTN_NPY_I64:
      v = (double)((const int64_t *)a.data)[i];
      break;
    default:
      v = NAN;
    }
    ok = v >= 0.0 && v <= 16.0; /* NaN fails too */
    pixels[i] = (float)v;
  }
  attn_npy_free(&a);
  if (!ok)
    return train_fail(
        err, err_size,
        "%s: expected 64 values (8x8) in 0..16, float32 or int, as "
        "scikit-learn's digits",
        spec);
  return 0;
}

int vit_trace(const char *weights, const char *image, int threads,
              model_trace *t, float pixels[64], int *label, int *predicted,
              char *err, size_t err_size) {
  memset(t, 0, sizeof *t);
  *predicted = -1;
  if (!image || load_image(image, pixels, label, err, err_size) != 0)
    return image ? -1 : train_fail(err, err_size, "vit: no image given");
  const char *path = default_path(weights, "train-vit/model.safetensors");
  vit *m = NULL;
  if (vit_load(path, 1, threads, &m, err, err_size) != 0)
    return -1;
  float img[64];
  for (int i = 0; i < 64; i++)
    img[i] = pixels[i] / 16.0f; /* the trainer's scale */
  train_attn_probe *p = NULL;
  int np = 0, rc = -1;
  int32_t pred = -1;
  if (vit_predict(m, 1, img, NULL, &pred, err, err_size) != 0)
    goto done;
  *predicted = pred;
  if (vit_probe(m, img, &p, &np, err, err_size) != 0 ||
      probes_to_trace(p, np, "block.", "", 0, t, err, err_size) != 0)
    goto done;
  snprintf(t->model, sizeof t->model, "vit");
  const int64_t n = t->n_tokens, grid = (int64_t)llround(sqrt((double)(n - 1)));
  char name[48];
  for (int64_t i = 0; i < n; i++) {
    if (i == 0)
      snprintf(name, sizeof name, "cls");
    else
      snprintf(name, sizeof name, "r%lldc%lld", (long long)((i - 1) / grid),
               (long long)((i - 1) % grid));
    if (model_trace_set_token(t, i, name) != 0) {
      train_fail(err, err_size, "out of memory (token labels)");
      goto done;
    }
  }
  rc = 0;
done:
  if (rc != 0)
    model_trace_free(t);
  free_probes(p, np);
  vit_free(m);
  return rc;
}
