/*
 * bert.c - the BERT encoder of all-MiniLM-L6-v2 in one file (llm.c's
 * habit: every tensor's shape in a comment). B sequences padded to S
 * tokens, N = B*S rows, H hidden, NH heads of D = H / NH, FF feed-forward:
 *
 *   x = LN_e(wte[id] + wpe[pos] + wtt[0])          [N, H]   embeddings
 *   for each of the L layers:
 *     a = MHA(x)                                   [N, H]   libattn layer:
 *         Q, K, V = x Wq^T + bq, ...  [N, H] each           (separate
 *         O = attention(Q, K, V), keys j < lens[b]          weights with
 *         a = O Wo^T + bo                                   biases)
 *     x = LN_1(x + a)                              [N, H]
 *     f = gelu(x W1^T + b1)                        [N, FF]   erf form
 *     x = LN_2(x + f W2^T + b2)                    [N, H]
 *   embedding = normalise(mean of x over the real tokens)   [B, H]
 *
 * Hugging Face's BertModel, sentence-transformers' mean pooling and
 * Normalize. The attention is libattn's multi-head layer (attn/layer.h)
 * with the padding given as kv_lens, so no padding key is ever read and
 * nothing of size S x S exists. The dense layers outside it use CBLAS like
 * the layer does.
 */
#include "bert.h"

#include "attn.h"
#include "attn/layer.h"
#include "json.h"
#include "locate.h"
#include "models.h"
#include "safetensors.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BERT_BATCH 32 /* texts per padded batch (sentence-transformers') */

typedef struct bert_layer {
  attn_layer *mha;      /* q/k/v/out projections [H, H] + biases [H]     */
  float *ln1_w, *ln1_b; /* (H) attention.output.LayerNorm               */
  float *w1, *b1;       /* (FF, H), (FF) intermediate.dense                */
  float *w2, *b2;       /* (H, FF), (H) output.dense                      */
  float *ln2_w, *ln2_b; /* (H) output.LayerNorm                         */
} bert_layer;

struct bert {
  bert_config c;
  wordpiece *wp;
  float *wte;           /* (V, H) word embeddings                      */
  float *wpe;           /* (P, H) position embeddings                  */
  float *wtt;           /* (type_vocab, H) token type embeddings       */
  float *lne_w, *lne_b; /* (H) embeddings.LayerNorm                    */
  bert_layer *layer;    /* (L)                                         */
  float *params;        /* the storage of every array above            */
  /* scratch of a forward, grown as needed (one call at a time) */
  float *a, *f;   /* (N, H), (N, FF)                              */
  size_t rows;    /* N the scratch holds                         */
  void *act, *ws; /* the layer's activations and workspace       */
  size_t act_size, ws_size;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(char *err, size_t err_size, const char *fmt, ...) {
  if (err && err_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* ---------------------------------------------------------------------- */
/* Loading                                                                */
/* ---------------------------------------------------------------------- */

/* A small text file (at most max bytes) read whole; NUL appended. */
static char *read_small(const char *path, size_t max, size_t *n) {
  /* a regular file: O_NONBLOCK, so that a FIFO cannot block the open */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    close(fd);
    return NULL;
  }
  FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
  if (!fp) {
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  char *buf = malloc(max + 1);
  size_t got = buf ? fread(buf, 1, max + 1, fp) : 0;
  fclose(fp);
  if (!buf || got > max) {
    free(buf);
    return NULL;
  }
  buf[got] = 0;
  *n = got;
  return buf;
}

/* An integer field of a JSON object node 0; -1 when absent or not one. */
static int64_t json_field(const json_doc *d, const char *key) {
  int64_t v, i = json_object_get(d, 0, key);
  return i >= 0 && json_int64(d, i, &v) == 0 ? v : -1;
}

/* config.json (and sentence_bert_config.json) into m->c. */
static int load_config(bert *m, const char *dir, char *err, size_t es) {
  char path[4096];
  size_t n;
  json_doc d;
  char jerr[160];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *text = read_small(path, 1 << 20, &n);
  if (!text)
    return fail(err, es, "%s: cannot read (or over 1 MiB)", path);
  if (json_parse(text, n, &d, jerr, sizeof jerr) != 0) {
    free(text);
    return fail(err, es, "%s: %s", path, jerr);
  }
  bert_config *c = &m->c;
  c->vocab = json_field(&d, "vocab_size");
  c->hidden = json_field(&d, "hidden_size");
  c->layers = json_field(&d, "num_hidden_layers");
  c->heads = json_field(&d, "num_attention_heads");
  c->inter = json_field(&d, "intermediate_size");
  c->max_pos = json_field(&d, "max_position_embeddings");
  c->type_vocab = json_field(&d, "type_vocab_size");
  double eps = 1e-12;
  int64_t ie = json_object_get(&d, 0, "layer_norm_eps");
  if (ie >= 0)
    json_double(&d, ie, &eps);
  c->ln_eps = (float)eps;
  int64_t act = json_object_get(&d, 0, "hidden_act");
  int64_t pos = json_object_get(&d, 0, "position_embedding_type");
  int ok_act = act < 0 || json_string_eq(&d, act, "gelu");
  int ok_pos = pos < 0 || json_string_eq(&d, pos, "absolute");
  json_free(&d);
  free(text);
  if (!ok_act || !ok_pos)
    return fail(err, es,
                "%s: only hidden_act \"gelu\" and absolute positions "
                "are supported",
                path);
  if (c->vocab < 1 || c->hidden < 1 || c->layers < 1 || c->layers > 1024 ||
      c->heads < 1 || c->hidden % c->heads != 0 || c->hidden > 65536 ||
      c->inter < 1 || c->inter > 1 << 20 || c->max_pos < 2 ||
      c->max_pos > 1 << 20 || c->type_vocab < 1 || c->vocab > 1 << 24 ||
      !(c->ln_eps >= 0))
    return fail(err, es, "%s: missing or unusable sizes", path);
  c->max_seq = c->max_pos;
  snprintf(path, sizeof path, "%s/sentence_bert_config.json", dir);
  text = read_small(path, 1 << 20, &n);
  if (text && json_parse(text, n, &d, jerr, sizeof jerr) == 0) {
    int64_t ms = json_field(&d, "max_seq_length");
    if (ms >= 2 && ms < c->max_seq)
      c->max_seq = ms;
    json_free(&d);
  }
  free(text);
  return 0;
}

/* Copies tensor name (or "bert." name) of the given shape into dst. */
static int load_tensor(const st_file *st, const char *name, int ndim, int64_t r,
                       int64_t cols, float *dst, char *err, size_t es) {
  const st_tensor *t = st_find(st, name);
  char alt[256];
  if (!t) {
    snprintf(alt, sizeof alt, "bert.%s", name);
    t = st_find(st, alt);
  }
  if (!t)
    return fail(err, es, "model.safetensors: no tensor '%s'", name);
  const int64_t shape[2] = {r, cols};
  return st_read_f32(t, ndim, shape, dst, ndim == 1 ? r : r * cols, err, es);
}

/* Creates layer l's attention and loads its weights. */
static int load_mha(bert *m, const st_file *st, int64_t l, char *err,
                    size_t es) {
  const int64_t H = m->c.hidden;
  attn_layer_config lc;
  attn_layer_config_init(&lc);
  lc.d_model = H;
  lc.heads_q = m->c.heads;
  if (attn_layer_create(&lc, &m->layer[l].mha, err, es) != ATTN_OK)
    return -1;
  static const char *const ours[8] = {
      "q_proj_weight", "q_proj_bias", "k_proj_weight",   "k_proj_bias",
      "v_proj_weight", "v_proj_bias", "out_proj.weight", "out_proj.bias"};
  static const char *const theirs[8] = {
      "attention.self.query.weight",   "attention.self.query.bias",
      "attention.self.key.weight",     "attention.self.key.bias",
      "attention.self.value.weight",   "attention.self.value.bias",
      "attention.output.dense.weight", "attention.output.dense.bias"};
  for (int k = 0; k < 8; k++) {
    attn_layer_param p;
    char name[160];
    if (attn_layer_param_find(m->layer[l].mha, ours[k], &p) != ATTN_OK)
      return fail(err, es, "the layer has no %s", ours[k]);
    snprintf(name, sizeof name, "encoder.layer.%lld.%s", (long long)l,
             theirs[k]);
    if (load_tensor(st, name, p.ndim, p.shape[0], p.shape[1], p.data, err,
                    es) != 0)
      return -1;
  }
  return 0;
}

/* Carves the f32 arrays out of one block and fills them from st. */
static int load_weights(bert *m, const st_file *st, char *err, size_t es) {
  const bert_config *c = &m->c;
  const int64_t H = c->hidden, FF = c->inter;
  const int64_t per_layer = 4 * H + FF * H + FF + H * FF + H + 2 * H;
  const int64_t total =
      (c->vocab + c->max_pos + c->type_vocab + 2) * H + c->layers * per_layer;
  m->params = malloc((size_t)total * sizeof(float));
  m->layer = calloc((size_t)c->layers, sizeof *m->layer);
  if (!m->params || !m->layer)
    return fail(err, es, "out of memory for %lld parameters", (long long)total);
  float *p = m->params;
#define TAKE(ptr, count) (ptr = p, p += (count))
  TAKE(m->wte, c->vocab * H);
  TAKE(m->wpe, c->max_pos * H);
  TAKE(m->wtt, c->type_vocab * H);
  TAKE(m->lne_w, H);
  TAKE(m->lne_b, H);
  int rc = load_tensor(st, "embeddings.word_embeddings.weight", 2, c->vocab, H,
                       m->wte, err, es);
  rc = rc ? rc
          : load_tensor(st, "embeddings.position_embeddings.weight", 2,
                        c->max_pos, H, m->wpe, err, es);
  rc = rc ? rc
          : load_tensor(st, "embeddings.token_type_embeddings.weight", 2,
                        c->type_vocab, H, m->wtt, err, es);
  rc = rc ? rc
          : load_tensor(st, "embeddings.LayerNorm.weight", 1, H, 0, m->lne_w,
                        err, es);
  rc = rc ? rc
          : load_tensor(st, "embeddings.LayerNorm.bias", 1, H, 0, m->lne_b, err,
                        es);
  for (int64_t l = 0; l < c->layers && rc == 0; l++) {
    bert_layer *y = &m->layer[l];
    TAKE(y->ln1_w, H);
    TAKE(y->ln1_b, H);
    TAKE(y->w1, FF * H);
    TAKE(y->b1, FF);
    TAKE(y->w2, H * FF);
    TAKE(y->b2, H);
    TAKE(y->ln2_w, H);
    TAKE(y->ln2_b, H);
    const struct {
      const char *name;
      int ndim;
      int64_t r, cols;
      float *dst;
    } w[8] = {{"attention.output.LayerNorm.weight", 1, H, 0, y->ln1_w},
              {"attention.output.LayerNorm.bias", 1, H, 0, y->ln1_b},
              {"intermediate.dense.weight", 2, FF, H, y->w1},
              {"intermediate.dense.bias", 1, FF, 0, y->b1},
              {"output.dense.weight", 2, H, FF, y->w2},
              {"output.dense.bias", 1, H, 0, y->b2},
              {"output.LayerNorm.weight", 1, H, 0, y->ln2_w},
              {"output.LayerNorm.bias", 1, H, 0, y->ln2_b}};
    for (int k = 0; k < 8 && rc == 0; k++) {
      char name[160];
      snprintf(name, sizeof name, "encoder.layer.%lld.%s", (long long)l,
               w[k].name);
      rc = load_tensor(st, name, w[k].ndim, w[k].r, w[k].cols, w[k].dst, err,
                       es);
    }
    if (rc == 0)
      rc = load_mha(m, st, l, err, es);
  }
#undef TAKE
  return rc;
}

int bert_load(const char *dir, bert **out, char *err, size_t err_size) {
  *out = NULL;
  bert *m = calloc(1, sizeof *m);
  if (!m)
    return fail(err, err_size, "out of memory");
  char path[4096];
  st_file st;
  int rc = load_config(m, dir, err, err_size);
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    rc = wordpiece_load(path, &m->wp, err, err_size);
  }
  if (rc == 0 && wordpiece_vocab_size(m->wp) > m->c.vocab)
    rc = fail(err, err_size, "vocab.txt has %lld tokens, the model %lld",
              (long long)wordpiece_vocab_size(m->wp), (long long)m->c.vocab);
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = st_open(path, &st, err, err_size);
    if (rc == 0) {
      char why[300];
      rc = load_weights(m, &st, why, sizeof why);
      if (rc != 0)
        fail(err, err_size, "%s: %s", path, why);
      st_close(&st);
    }
  }
  if (rc != 0) {
    bert_free(m);
    return -1;
  }
  *out = m;
  return 0;
}

void bert_free(bert *m) {
  if (!m)
    return;
  for (int64_t l = 0; m->layer && l < m->c.layers; l++)
    attn_layer_free(m->layer[l].mha);
  free(m->layer);
  free(m->params);
  wordpiece_free(m->wp);
  free(m->a);
  free(m->f);
  free(m->act);
  free(m->ws);
  free(m);
}

const bert_config *bert_get_config(const bert *m) { return &m->c; }
const wordpiece *bert_tokenizer(const bert *m) { return m->wp; }

/* ---------------------------------------------------------------------- */
/* The pieces of the forward                                              */
/* ---------------------------------------------------------------------- */

/* y [n, out] = x [n, in] W^T (W [out, in]) + b, as the layer's dense.c. */
static void linear(int64_t n, int64_t out, int64_t in, const float *x,
                   const float *w, const float *b, float *y) {
  for (int64_t i = 0; i < n; i++)
    memcpy(y + i * out, b, (size_t)out * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out,
              (int)in, 1.0f, x, (int)in, w, (int)in, 1.0f, y, (int)out);
}

/* x [n, H] = LN(x + r) with weight w, bias b (r NULL: LN(x)). Mean and
 * variance in double (PyTorch sums in f32 with a Welford pass; both are
 * far below the parity tolerance). */
static void layernorm(float *x, const float *r, const float *w, const float *b,
                      int64_t n, int64_t H, float eps) {
  for (int64_t i = 0; i < n; i++) {
    float *row = x + i * H;
    double s = 0, ss = 0;
    if (r)
      for (int64_t j = 0; j < H; j++)
        row[j] += r[i * H + j];
    for (int64_t j = 0; j < H; j++)
      s += row[j];
    const double mean = s / (double)H;
    for (int64_t j = 0; j < H; j++)
      ss += (row[j] - mean) * (row[j] - mean);
    const float inv = (float)(1.0 / sqrt(ss / (double)H + eps));
    for (int64_t j = 0; j < H; j++)
      row[j] = ((float)(row[j] - mean)) * inv * w[j] + b[j];
  }
}

/* x = x Phi(x) = x/2 (1 + erf(x / sqrt 2)), the erf GELU of BERT, with
 * erf(z) = 1 - 1 / (1 + a1 z + ... + a6 z^6)^16 for z >= 0 (Abramowitz and
 * Stegun 7.1.28, |error| <= 3e-7): no libm call, so the loop vectorises
 * (erff was a quarter of the forward's time); the GELU's error is below
 * 1e-6 (measured against erf in double). */
static void gelu(float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float a = fabsf(x[i]), z = a * 0.70710678118654752f;
    float t = 0.0000430638f;
    t = t * z + 0.0002765672f;
    t = t * z + 0.0001520143f;
    t = t * z + 0.0092705272f;
    t = t * z + 0.0422820123f;
    t = t * z + 0.0705230784f;
    t = t * z + 1.0f;
    t = t * t, t = t * t, t = t * t, t = t * t;   /* ^16 */
    x[i] = 0.5f * (x[i] + a * (1.0f - 1.0f / t)); /* erf(|x|/sqrt 2) */
  }
}

/* x [B, S, H] = LN_e(wte[id] + wpe[s] + wtt[0]). */
static void embeddings(const bert *m, const int32_t *ids, int64_t B, int64_t S,
                       float *x) {
  const int64_t H = m->c.hidden;
  for (int64_t t = 0; t < B * S; t++) {
    const float *we = m->wte + (int64_t)ids[t] * H;
    const float *pe = m->wpe + (t % S) * H;
    for (int64_t j = 0; j < H; j++)
      x[t * H + j] = we[j] + pe[j] + m->wtt[j];
  }
  layernorm(x, NULL, m->lne_w, m->lne_b, B * S, H, m->c.ln_eps);
}

/* Grows the scratch for N rows and the layer's buffers for call c. */
static int scratch(bert *m, int64_t N, attn_layer_call *c, char *err,
                   size_t es) {
  if ((size_t)N > m->rows) {
    free(m->a);
    free(m->f);
    m->a = malloc((size_t)(N * m->c.hidden) * sizeof(float));
    m->f = malloc((size_t)(N * m->c.inter) * sizeof(float));
    m->rows = m->a && m->f ? (size_t)N : 0;
    if (!m->rows)
      return fail(err, es, "out of memory for %lld rows", (long long)N);
  }
  size_t act = 0, ws = 0;
  if (attn_layer_buffer_sizes(m->layer[0].mha, NULL, c, &act, &ws) != ATTN_OK)
    return fail(err, es, "attn_layer_buffer_sizes failed");
  if (act > m->act_size) {
    free(m->act);
    m->act_size = 0;
    if (!(m->act = aligned_alloc(64, (act + 63) / 64 * 64)))
      return fail(err, es, "out of memory for activations");
    m->act_size = act;
  }
  if (ws > m->ws_size) {
    free(m->ws);
    m->ws_size = 0;
    if (!(m->ws = aligned_alloc(64, (ws + 63) / 64 * 64)))
      return fail(err, es, "out of memory for the workspace");
    m->ws_size = ws;
  }
  c->activations = m->act;
  c->activations_size = m->act_size;
  c->workspace = m->ws;
  c->workspace_size = m->ws_size;
  return 0;
}

/* Layer l's Q, K (exactly as the layer computes them: the same dense
 * call on the same input) and the LSE of attention over them, into the
 * trace. x [S, H] is the layer's input; q, k, o are [S, H] scratch. */
static int trace_layer(bert *m, int64_t l, const float *x, int64_t S,
                       int threads, model_trace_layer *tl, char *err,
                       size_t es) {
  const int64_t H = m->c.hidden, NH = m->c.heads, D = H / NH;
  attn_layer_param wq, bq, wk, bk;
  attn_layer *mha = m->layer[l].mha;
  if (attn_layer_param_find(mha, "q_proj_weight", &wq) != ATTN_OK ||
      attn_layer_param_find(mha, "q_proj_bias", &bq) != ATTN_OK ||
      attn_layer_param_find(mha, "k_proj_weight", &wk) != ATTN_OK ||
      attn_layer_param_find(mha, "k_proj_bias", &bk) != ATTN_OK)
    return fail(err, es, "the layer lacks its projections");
  linear(S, H, H, x, wq.data, bq.data, tl->q); /* (S, NH, D) */
  linear(S, H, H, x, wk.data, bk.data, tl->k); /* (S, NH, D) */
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(tl->q, ATTN_DTYPE_F32, 1, S, NH, D);
  p.k = attn_tensor_bshd(tl->k, ATTN_DTYPE_F32, 1, S, NH, D);
  p.v = p.k; /* only the LSE is kept: V does not change it */
  p.o = attn_tensor_bshd(m->a, ATTN_DTYPE_F32, 1, S, NH, D);
  p.lse = tl->lse; /* (1, NH, S) */
  p.num_threads = threads;
  p.error_message = err;
  p.error_message_size = es;
  return attn_forward(NULL, &p) == ATTN_OK ? 0 : -1;
}

int bert_forward(bert *m, const int32_t *ids, const int32_t *lens, int64_t B,
                 int64_t S, int threads, float *x, model_trace *trace,
                 char *err, size_t es) {
  const bert_config *c = &m->c;
  const int64_t H = c->hidden, FF = c->inter, N = B * S;
  if (B < 1 || S < 1 || S > c->max_pos || B > (1 << 20))
    return fail(err, es, "batch %lld x %lld tokens: 1..%lld tokens only",
                (long long)B, (long long)S, (long long)c->max_pos);
  for (int64_t b = 0; b < B; b++)
    if (lens[b] < 1 || lens[b] > S)
      return fail(err, es, "sequence %lld: length %d outside 1..%lld",
                  (long long)b, lens[b], (long long)S);
  for (int64_t t = 0; t < N; t++)
    if (ids[t] < 0 || ids[t] >= c->vocab)
      return fail(err, es, "token id %d outside the vocabulary", ids[t]);
  if (trace && (B != 1 || model_trace_alloc(trace, c->layers, S, c->heads,
                                            c->heads, H / c->heads, 0) != 0))
    return fail(err, es, "cannot make the trace (one sequence only)");
  if (threads > 0)
    openblas_set_num_threads(threads);
  attn_params opt;
  attn_params_init(&opt);
  opt.kv_lens = lens; /* padding keys are never read */
  opt.num_threads = threads;
  attn_layer_call call;
  attn_layer_call_init(&call);
  call.batch = B;
  call.seq_q = S;
  call.options = &opt;
  call.error_message = err;
  call.error_message_size = es;
  if (scratch(m, N, &call, err, es) != 0)
    return -1;
  embeddings(m, ids, B, S, x); /* x (N, H) */
  for (int64_t l = 0; l < c->layers; l++) {
    const bert_layer *y = &m->layer[l];
    if (trace &&
        trace_layer(m, l, x, S, threads, &trace->layers[l], err, es) != 0)
      return -1;
    call.x = x;
    call.out = m->a; /* a (N, H) */
    if (attn_layer_forward(y->mha, NULL, &call) != ATTN_OK)
      return -1;
    layernorm(x, m->a, y->ln1_w, y->ln1_b, N, H, c->ln_eps);
    linear(N, FF, H, x, y->w1, y->b1, m->f); /* f (N, FF) */
    gelu(m->f, N * FF);
    linear(N, H, FF, m->f, y->w2, y->b2, m->a); /* a (N, H) */
    layernorm(x, m->a, y->ln2_w, y->ln2_b, N, H, c->ln_eps);
  }
  if (trace) {
    for (int64_t t = 0; t < S; t++) {
      const char *s = wordpiece_token(m->wp, ids[t]);
      if (model_trace_set_token(trace, t, s ? s : "?") != 0)
        return fail(err, es, "out of memory for the trace");
    }
    snprintf(trace->model, sizeof trace->model, "encoder");
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Sentence embeddings                                                    */
/* ---------------------------------------------------------------------- */
typedef struct tokens {
  int32_t *ids;
  int64_t n;
  int64_t index; /* the text's position in the caller's list */
} tokens;

static int longest_first(const void *a, const void *b) {
  const tokens *x = a, *y = b;
  if (x->n != y->n)
    return x->n > y->n ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* One padded batch of texts t[0, B): out rows at their indices. */
static int embed_batch(bert *m, const tokens *t, int64_t B, int threads,
                       float *out, char *err, size_t es) {
  const int64_t H = m->c.hidden, S = t[0].n;           /* longest first */
  int32_t *ids = calloc((size_t)(B * S), sizeof *ids); /* pad: id 0 */
  int32_t *lens = malloc((size_t)B * sizeof *lens);
  float *x = malloc((size_t)(B * S * H) * sizeof *x);
  int rc = -1;
  if (!ids || !lens || !x) {
    fail(err, es, "out of memory for a batch of %lld x %lld", (long long)B,
         (long long)S);
    goto done;
  }
  for (int64_t b = 0; b < B; b++) {
    memcpy(ids + b * S, t[b].ids, (size_t)t[b].n * sizeof *ids);
    lens[b] = (int32_t)t[b].n;
  }
  if (bert_forward(m, ids, lens, B, S, threads, x, NULL, err, es) != 0)
    goto done;
  for (int64_t b = 0; b < B; b++) { /* mean over real tokens, then L2 */
    float *e = out + t[b].index * H;
    double norm = 0;
    for (int64_t j = 0; j < H; j++) {
      double s = 0;
      for (int64_t i = 0; i < t[b].n; i++)
        s += x[(b * S + i) * H + j];
      e[j] = (float)(s / (double)t[b].n);
      norm += (double)e[j] * e[j];
    }
    const double d = sqrt(norm) > 1e-12 ? sqrt(norm) : 1e-12;
    for (int64_t j = 0; j < H; j++)
      e[j] = (float)(e[j] / d);
  }
  rc = 0;
done:
  free(ids);
  free(lens);
  free(x);
  return rc;
}

int bert_embed(bert *m, const char *const *texts, int64_t n, int threads,
               float *out, char *err, size_t es) {
  if (n < 1)
    return fail(err, es, "no text to embed");
  tokens *t = calloc((size_t)n, sizeof *t);
  if (!t)
    return fail(err, es, "out of memory");
  int rc = 0;
  for (int64_t i = 0; i < n && rc == 0; i++) {
    t[i].index = i;
    rc = wordpiece_encode(m->wp, texts[i], strlen(texts[i]), m->c.max_seq,
                          &t[i].ids, &t[i].n, err, es);
  }
  if (rc == 0)
    qsort(t, (size_t)n, sizeof *t, longest_first);
  for (int64_t b = 0; b < n && rc == 0; b += BERT_BATCH)
    rc = embed_batch(m, t + b, n - b < BERT_BATCH ? n - b : BERT_BATCH, threads,
                     out, err, es);
  for (int64_t i = 0; i < n; i++)
    free(t[i].ids);
  free(t);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* attn show's entry point (models.h)                                     */
/* ---------------------------------------------------------------------- */
int encoder_trace(const char *weights, const char *text, int threads,
                  model_trace *trace, char *err, size_t err_size) {
  char dir[4096];
  bert *m = NULL;
  int32_t *ids = NULL;
  int64_t n = 0;
  float *x = NULL;
  int rc = -1;
  memset(trace, 0, sizeof *trace);
  if (model_locate(MODEL_ENCODER, weights, dir, sizeof dir, err, err_size) ||
      bert_load(dir, &m, err, err_size) ||
      wordpiece_encode(m->wp, text, strlen(text), m->c.max_pos, &ids, &n, err,
                       err_size))
    goto done;
  x = malloc((size_t)(n * m->c.hidden) * sizeof *x);
  if (!x) {
    fail(err, err_size, "out of memory");
    goto done;
  }
  const int32_t len = (int32_t)n;
  rc = bert_forward(m, ids, &len, 1, n, threads, x, trace, err, err_size);
done:
  if (rc != 0)
    model_trace_free(trace);
  free(x);
  free(ids);
  bert_free(m);
  return rc;
}
