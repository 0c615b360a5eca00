/*
 * llama.c - SmolLM2-135M-Instruct (Llama architecture) on libattn, in the
 * manner of llama2.c: one file, every tensor's shape in a comment.
 *
 *   x = embed[ids]                                       (n, dim)
 *   for each layer:
 *     h = rmsnorm(x) * attn_norm
 *     q = h Wq^T, k = h Wk^T, v = h Wv^T    (n, hq*d), (n, hkv*d), (n, hkv*d)
 *     q, k = rope(q), rope(k)               interleaved pairs (see llama.h)
 *     o = attention(q, k, v), causal, GQA   attn_forward / the KV cache
 *     x = x + o Wo^T
 *     h = rmsnorm(x) * ffn_norm
 *     x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T              SwiGLU, (n, ffn)
 *   logits = (rmsnorm(x) * output_norm) E^T     tied: E = embed   (vocab)
 *
 * The model's own choices (RMSNorm eps, RoPE base, head counts) come from
 * the GGUF's llama.* metadata.
 */
#include "llama.h"

#include "attn.h"
#include "gguf.h"
#include "locate.h"
#include "models.h"
#include "unicode.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 64 /* tokens per KV cache page */

typedef struct llama_layer_w {
  float *attn_norm; /* (dim)                  */
  float *wq;        /* (heads_q * hd, dim)    */
  float *wk;        /* (heads_kv * hd, dim)   */
  float *wv;        /* (heads_kv * hd, dim)   */
  float *wo;        /* (dim, heads_q * hd)    */
  float *ffn_norm;  /* (dim)                  */
  float *w_gate;    /* (ffn, dim)             */
  float *w_up;      /* (ffn, dim)             */
  float *w_down;    /* (dim, ffn)             */
} llama_layer_w;

struct llama {
  llama_config c;
  float *weights;        /* every tensor below, dequantised       */
  float *embed;          /* (vocab, dim)                          */
  float *out_norm;       /* (dim)                                 */
  float *out;            /* (vocab, dim): embed when tied         */
  llama_layer_w *layers; /* (n_layers)                            */
  bpe *tok;
  attn_rope rope; /* interleaved, base from the GGUF       */
  int threads;
};

struct llama_session {
  llama *m;
  int64_t capacity;      /* tokens, a multiple of PAGE                 */
  int64_t n_pages;       /* capacity / PAGE                            */
  float *kv;             /* (n_layers, 2, n_pages, PAGE, heads_kv, hd)  */
  int32_t *block_table;  /* (n_pages): page i holds tokens i*PAGE...   */
  int32_t *seq_lens;     /* (n_layers): tokens stored in each layer    */
  attn_kv_cache *caches; /* (n_layers)                                 */
  int64_t length;        /* tokens run                                 */
};

static void fail(char *err, size_t es, const char *fmt, ...) {
  if (!err || es == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, es, fmt, ap);
  va_end(ap);
}

/* ---- loading ------------------------------------------------------------ */

static int meta_u32(gguf_file *f, const char *key, int64_t *out, char *err,
                    size_t es) {
  uint32_t v;
  if (gguf_get_u32(f, key, &v, err, es))
    return -1;
  *out = v;
  return 0;
}

static int read_config(gguf_file *f, llama_config *c, char *err, size_t es) {
  gguf_str arch;
  if (gguf_get_string(f, "general.architecture", &arch, err, es))
    return -1;
  if (!(arch.len == 5 && memcmp(arch.s, "llama", 5) == 0)) {
    fail(err, es, "general.architecture is not \"llama\"");
    return -1;
  }
  float base = 10000.0f;
  if (meta_u32(f, "llama.block_count", &c->n_layers, err, es) ||
      meta_u32(f, "llama.embedding_length", &c->dim, err, es) ||
      meta_u32(f, "llama.attention.head_count", &c->heads_q, err, es) ||
      meta_u32(f, "llama.attention.head_count_kv", &c->heads_kv, err, es) ||
      meta_u32(f, "llama.feed_forward_length", &c->ffn, err, es) ||
      meta_u32(f, "llama.context_length", &c->context, err, es) ||
      gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &c->eps, err,
                   es))
    return -1;
  if (gguf_find_kv(f, "llama.rope.freq_base") &&
      gguf_get_f32(f, "llama.rope.freq_base", &base, err, es))
    return -1;
  c->rope_base = base;
  if (c->n_layers < 1 || c->n_layers > 1024 || c->dim < 1 || c->dim > 65536 ||
      c->heads_q < 1 || c->heads_kv < 1 || c->heads_q % c->heads_kv != 0 ||
      c->dim % c->heads_q != 0 || c->ffn < 1 || c->ffn > 1 << 20 ||
      c->context < 1 || !(c->eps > 0.0f) || !(base > 1.0f)) {
    fail(err, es,
         "inconsistent llama.* metadata (layers %lld, dim %lld, "
         "heads %lld/%lld, ffn %lld)",
         (long long)c->n_layers, (long long)c->dim, (long long)c->heads_q,
         (long long)c->heads_kv, (long long)c->ffn);
    return -1;
  }
  c->head_dim = c->dim / c->heads_q;
  if (c->head_dim > 256 || c->head_dim % 2 != 0) {
    fail(err, es, "head_dim %lld is not an even number up to 256",
         (long long)c->head_dim);
    return -1;
  }
  uint32_t v;
  c->bos = gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &v, NULL, 0)
               ? -1
               : (int32_t)v;
  c->eos = gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &v, NULL, 0)
               ? -1
               : (int32_t)v;
  c->add_bos = 0;
  if (gguf_find_kv(f, "tokenizer.ggml.add_bos_token"))
    gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &c->add_bos, NULL, 0);
  return 0;
}

/* One tensor of shape ne (GGUF order: ne[0] fastest) into *dst, advancing
 * the cursor; NULL name skips nothing and fails. */
static int load_tensor(gguf_file *f, const char *name, int64_t ne0, int64_t ne1,
                       float **cur, float **dst, char *err, size_t es) {
  const gguf_tensor *t = gguf_find_tensor(f, name);
  if (!t) {
    fail(err, es, "tensor %s is missing", name);
    return -1;
  }
  if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
    fail(err, es,
         "tensor %s has shape [%lld, %lld, %lld, %lld], expected "
         "[%lld, %lld]",
         name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
         (long long)t->ne[3], (long long)ne0, (long long)ne1);
    return -1;
  }
  if (gguf_tensor_f32(t, *cur, ne0 * ne1, err, es))
    return -1;
  *dst = *cur;
  *cur += ne0 * ne1;
  return 0;
}

static int load_weights(llama *m, gguf_file *f, char *err, size_t es) {
  const llama_config *c = &m->c;
  int64_t d = c->dim, qd = c->heads_q * c->head_dim,
          kd = c->heads_kv * c->head_dim;
  int tied = gguf_find_tensor(f, "output.weight") == NULL;
  int64_t per_layer = 2 * d + qd * d + 2 * kd * d + d * qd + 3 * c->ffn * d;
  int64_t total = c->vocab * d * (tied ? 1 : 2) + d + c->n_layers * per_layer;
  m->weights = malloc((size_t)total * sizeof(float));
  m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
  if (!m->weights || !m->layers) {
    fail(err, es, "out of memory for %lld weights", (long long)total);
    return -1;
  }
  float *cur = m->weights;
  if (load_tensor(f, "token_embd.weight", d, c->vocab, &cur, &m->embed, err,
                  es) ||
      load_tensor(f, "output_norm.weight", d, 1, &cur, &m->out_norm, err, es))
    return -1;
  m->out = m->embed;
  if (!tied &&
      load_tensor(f, "output.weight", d, c->vocab, &cur, &m->out, err, es))
    return -1;
  for (int64_t l = 0; l < c->n_layers; l++) {
    llama_layer_w *w = &m->layers[l];
    char n[9][64];
    const char *part[9] = {"attn_norm", "attn_q",      "attn_k",
                           "attn_v",    "attn_output", "ffn_norm",
                           "ffn_gate",  "ffn_up",      "ffn_down"};
    for (int i = 0; i < 9; i++)
      snprintf(n[i], sizeof n[i], "blk.%lld.%s.weight", (long long)l, part[i]);
    if (load_tensor(f, n[0], d, 1, &cur, &w->attn_norm, err, es) ||
        load_tensor(f, n[1], d, qd, &cur, &w->wq, err, es) ||
        load_tensor(f, n[2], d, kd, &cur, &w->wk, err, es) ||
        load_tensor(f, n[3], d, kd, &cur, &w->wv, err, es) ||
        load_tensor(f, n[4], qd, d, &cur, &w->wo, err, es) ||
        load_tensor(f, n[5], d, 1, &cur, &w->ffn_norm, err, es) ||
        load_tensor(f, n[6], d, c->ffn, &cur, &w->w_gate, err, es) ||
        load_tensor(f, n[7], d, c->ffn, &cur, &w->w_up, err, es) ||
        load_tensor(f, n[8], c->ffn, d, &cur, &w->w_down, err, es))
      return -1;
  }
  return 0;
}

void llama_free(llama *m) {
  if (!m)
    return;
  free(m->weights);
  free(m->layers);
  bpe_free(m->tok);
  free(m);
}

int llama_load(const char *path, int threads, llama **out, char *err,
               size_t es) {
  char file[4096], e[512] = "";
  gguf_file *f = NULL;
  *out = NULL;
  if (model_locate(MODEL_DECODER, path, file, sizeof file, err, es))
    return -1;
  if (gguf_open(file, &f, err, es))
    return -1;
  llama *m = calloc(1, sizeof *m);
  if (!m) {
    gguf_close(f);
    fail(err, es, "out of memory");
    return -1;
  }
  m->threads = threads;
  if (read_config(f, &m->c, e, sizeof e) ||
      bpe_from_gguf(f, &m->tok, e, sizeof e))
    goto bad;
  m->c.vocab = bpe_vocab_size(m->tok);
  if (load_weights(m, f, e, sizeof e))
    goto bad;
  attn_rope_init(&m->rope);
  m->rope.base = m->c.rope_base;
  m->rope.style = ATTN_ROPE_INTERLEAVED;
  gguf_close(f); /* everything was copied out of the mapping */
  *out = m;
  return 0;
bad:
  fail(err, es, "%s: %s", file, e);
  gguf_close(f);
  llama_free(m);
  return -1;
}

const llama_config *llama_get_config(const llama *m) { return &m->c; }
const bpe *llama_tokenizer(const llama *m) { return m->tok; }

/* ---- sessions: one paged KV cache per layer ----------------------------- */

void llama_session_free(llama_session *s) {
  if (!s)
    return;
  free(s->kv);
  free(s->block_table);
  free(s->seq_lens);
  free(s->caches);
  free(s);
}

int64_t llama_session_length(const llama_session *s) { return s->length; }

int llama_session_create(llama *m, int64_t capacity, llama_session **out,
                         char *err, size_t es) {
  const llama_config *c = &m->c;
  *out = NULL;
  if (capacity < 1 || capacity > c->context) {
    fail(err, es, "%lld tokens do not fit the model's context of %lld",
         (long long)capacity, (long long)c->context);
    return -1;
  }
  llama_session *s = calloc(1, sizeof *s);
  if (!s) {
    fail(err, es, "out of memory");
    return -1;
  }
  s->m = m;
  s->n_pages = (capacity + PAGE - 1) / PAGE;
  s->capacity = s->n_pages * PAGE;
  int64_t page_floats = PAGE * c->heads_kv * c->head_dim;
  s->kv = malloc((size_t)(c->n_layers * 2 * s->n_pages * page_floats) *
                 sizeof(float));
  s->block_table = malloc((size_t)s->n_pages * sizeof(int32_t));
  s->seq_lens = calloc((size_t)c->n_layers, sizeof(int32_t));
  s->caches = calloc((size_t)c->n_layers, sizeof *s->caches);
  if (!s->kv || !s->block_table || !s->seq_lens || !s->caches) {
    fail(err, es, "out of memory for a KV cache of %lld tokens",
         (long long)s->capacity);
    llama_session_free(s);
    return -1;
  }
  for (int64_t i = 0; i < s->n_pages; i++)
    s->block_table[i] = (int32_t)i;
  for (int64_t l = 0; l < c->n_layers; l++) {
    attn_kv_cache *kc = &s->caches[l];
    attn_kv_cache_init(kc);
    kc->dtype = ATTN_DTYPE_F32;
    kc->num_seqs = 1;
    kc->heads_kv = c->heads_kv;
    kc->head_dim = c->head_dim;
    kc->k = s->kv + (2 * l) * s->n_pages * page_floats;
    kc->v = s->kv + (2 * l + 1) * s->n_pages * page_floats;
    kc->seq_lens = &s->seq_lens[l];
    kc->page_size = PAGE;
    kc->num_pages = s->n_pages;
    kc->blocks_per_seq = s->n_pages;
    kc->block_table = s->block_table;
  }
  *out = s;
  return 0;
}

/* ---- the pieces of a layer ---------------------------------------------- */

/* out (n, dim) = x / rms(x) * w, per row; x (n, dim), w (dim). */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n,
                    int64_t dim, float eps) {
  for (int64_t i = 0; i < n; i++) {
    const float *xi = x + i * dim;
    double ss = 0;
    for (int64_t j = 0; j < dim; j++)
      ss += (double)xi[j] * xi[j];
    float r = (float)(1.0 / sqrt(ss / (double)dim + eps));
    for (int64_t j = 0; j < dim; j++)
      out[i * dim + j] = w[j] * (xi[j] * r);
  }
}

/* y (n, rows) = x (n, cols) W^T + beta y, W (rows, cols) row-major. */
static void matmul(float *y, const float *x, const float *w, int64_t n,
                   int64_t rows, int64_t cols, float beta) {
  if (n == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, w,
                (int)cols, x, 1, beta, y, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows,
                (int)cols, 1.0f, x, (int)cols, w, (int)cols, beta, y,
                (int)rows);
}

/* Scratch of one forward of n tokens. */
typedef struct acts {
  float *x; /* (n, dim) residual stream     */
  float *h; /* (n, dim) normalised          */
  float *q; /* (n, heads_q, hd)             */
  float *k; /* (n, heads_kv, hd)            */
  float *v; /* (n, heads_kv, hd)            */
  float *o; /* (n, heads_q, hd)             */
  float *g; /* (n, ffn) gate, then product  */
  float *u; /* (n, ffn) up                  */
  float *buf;
} acts;

static int acts_alloc(acts *a, const llama_config *c, int64_t n) {
  int64_t qd = c->heads_q * c->head_dim, kd = c->heads_kv * c->head_dim;
  int64_t per = 2 * c->dim + 2 * qd + 2 * kd + 2 * c->ffn;
  memset(a, 0, sizeof *a);
  a->buf = malloc((size_t)(n * per) * sizeof(float));
  if (!a->buf)
    return -1;
  float *p = a->buf;
  a->x = p, p += n * c->dim;
  a->h = p, p += n * c->dim;
  a->q = p, p += n * qd;
  a->o = p, p += n * qd;
  a->k = p, p += n * kd;
  a->v = p, p += n * kd;
  a->g = p, p += n * c->ffn;
  a->u = p;
  return 0;
}

/* x += (silu(h Wg^T) * (h Wu^T)) Wd^T, for n rows. */
static void ffn(const llama *m, const llama_layer_w *w, acts *a, int64_t n) {
  const llama_config *c = &m->c;
  rmsnorm(a->h, a->x, w->ffn_norm, n, c->dim, c->eps);
  matmul(a->g, a->h, w->w_gate, n, c->ffn, c->dim, 0.0f);
  matmul(a->u, a->h, w->w_up, n, c->ffn, c->dim, 0.0f);
  for (int64_t i = 0; i < n * c->ffn; i++) {
    float g = a->g[i];
    a->g[i] = g / (1.0f + expf(-g)) * a->u[i];
  }
  matmul(a->x, a->g, w->w_down, n, c->dim, c->ffn, 1.0f);
}

static int check(attn_status st, const char *what, const char *msg, char *err,
                 size_t es) {
  if (st == ATTN_OK)
    return 0;
  fail(err, es, "%s: %s (%s)", what, msg[0] ? msg : attn_strerror(st),
       attn_strerror(st));
  return -1;
}

/* The prompt: n tokens into an empty session, through attn_forward. */
static int prefill(llama_session *s, acts *a, int64_t n, model_trace *tr,
                   char *err, size_t es) {
  llama *m = s->m;
  const llama_config *c = &m->c;
  int64_t hd = c->head_dim, qd = c->heads_q * hd, kd = c->heads_kv * hd;
  char msg[256] = "";
  for (int64_t l = 0; l < c->n_layers; l++) {
    const llama_layer_w *w = &m->layers[l];
    rmsnorm(a->h, a->x, w->attn_norm, n, c->dim, c->eps);
    matmul(a->q, a->h, w->wq, n, qd, c->dim, 0.0f);
    matmul(a->k, a->h, w->wk, n, kd, c->dim, 0.0f);
    matmul(a->v, a->h, w->wv, n, kd, c->dim, 0.0f);
    /* q (1, n, heads_q, hd), k and v (1, n, heads_kv, hd) */
    attn_tensor tq =
        attn_tensor_bshd(a->q, ATTN_DTYPE_F32, 1, n, c->heads_q, hd);
    attn_tensor tk =
        attn_tensor_bshd(a->k, ATTN_DTYPE_F32, 1, n, c->heads_kv, hd);
    attn_tensor tv =
        attn_tensor_bshd(a->v, ATTN_DTYPE_F32, 1, n, c->heads_kv, hd);
    attn_tensor to =
        attn_tensor_bshd(a->o, ATTN_DTYPE_F32, 1, n, c->heads_q, hd);
    attn_params p;
    attn_params_init(&p);
    p.q = tq, p.k = tk, p.v = tv, p.o = to;
    p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    p.num_threads = m->threads;
    p.error_message = msg;
    p.error_message_size = sizeof msg;
    p.lse = tr ? tr->layers[l].lse : NULL; /* (heads_q, n) */
    if (check(attn_rope_apply_qk(&m->rope, &p, tq, tk, 0), "rope", msg, err,
              es))
      return -1;
    if (tr) {
      memcpy(tr->layers[l].q, a->q, (size_t)(n * qd) * sizeof(float));
      memcpy(tr->layers[l].k, a->k, (size_t)(n * kd) * sizeof(float));
    }
    if (check(attn_forward(NULL, &p), "attention", msg, err, es))
      return -1;
    /* the keys are rotated already: no RoPE on the way in */
    attn_kv_cache *kc = &s->caches[l];
    kc->error_message = msg;
    kc->error_message_size = sizeof msg;
    if (check(attn_kv_cache_append(NULL, kc, tk, tv, NULL, NULL), "kv cache",
              msg, err, es))
      return -1;
    matmul(a->x, a->o, w->wo, n, c->dim, qd, 1.0f);
    ffn(m, w, a, n);
  }
  return 0;
}

/* One token at the session's next position, from the KV caches. */
static int step(llama_session *s, acts *a, char *err, size_t es) {
  llama *m = s->m;
  const llama_config *c = &m->c;
  int64_t hd = c->head_dim, qd = c->heads_q * hd, kd = c->heads_kv * hd;
  char msg[256] = "";
  for (int64_t l = 0; l < c->n_layers; l++) {
    const llama_layer_w *w = &m->layers[l];
    rmsnorm(a->h, a->x, w->attn_norm, 1, c->dim, c->eps);
    matmul(a->q, a->h, w->wq, 1, qd, c->dim, 0.0f);
    matmul(a->k, a->h, w->wk, 1, kd, c->dim, 0.0f);
    matmul(a->v, a->h, w->wv, 1, kd, c->dim, 0.0f);
    attn_tensor tk =
        attn_tensor_bshd(a->k, ATTN_DTYPE_F32, 1, 1, c->heads_kv, hd);
    attn_tensor tv =
        attn_tensor_bshd(a->v, ATTN_DTYPE_F32, 1, 1, c->heads_kv, hd);
    attn_kv_cache *kc = &s->caches[l];
    kc->error_message = msg;
    kc->error_message_size = sizeof msg;
    /* the key is rotated at its position (seq_lens) on the way in */
    if (check(attn_kv_cache_append(NULL, kc, tk, tv, NULL, &m->rope),
              "kv cache", msg, err, es))
      return -1;
    attn_params p;
    attn_params_init(&p);
    p.q = attn_tensor_bshd(a->q, ATTN_DTYPE_F32, 1, 1, c->heads_q, hd);
    p.o = attn_tensor_bshd(a->o, ATTN_DTYPE_F32, 1, 1, c->heads_q, hd);
    p.num_threads = m->threads;
    p.error_message = msg;
    p.error_message_size = sizeof msg;
    /* the query is rotated at seq_lens - 1, the new token's position */
    if (check(attn_kv_cache_attend(NULL, kc, &p, &m->rope), "decode", msg, err,
              es))
      return -1;
    matmul(a->x, a->o, w->wo, 1, c->dim, qd, 1.0f);
    ffn(m, w, a, 1);
  }
  return 0;
}

static int embed(const llama *m, const int32_t *ids, int64_t n, float *x,
                 char *err, size_t es) {
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= m->c.vocab) {
      fail(err, es, "token id %d is outside the vocabulary (0..%lld)", ids[i],
           (long long)m->c.vocab - 1);
      return -1;
    }
    memcpy(x + i * m->c.dim, m->embed + (int64_t)ids[i] * m->c.dim,
           (size_t)m->c.dim * sizeof(float));
  }
  return 0;
}

/* logits (vocab) of the last row of a->x (n rows). */
static void head(const llama *m, acts *a, int64_t n, float *logits) {
  const llama_config *c = &m->c;
  float *last = a->x + (n - 1) * c->dim;
  rmsnorm(a->h, last, m->out_norm, 1, c->dim, c->eps);
  matmul(logits, a->h, m->out, 1, c->vocab, c->dim, 0.0f);
}

int llama_forward(llama_session *s, const int32_t *ids, int64_t n,
                  float *logits, model_trace *trace, char *err, size_t es) {
  const llama_config *c = &s->m->c;
  acts a;
  if (n < 1 || !ids) {
    fail(err, es, "no tokens to run");
    return -1;
  }
  if (n > s->capacity - s->length) {
    fail(err, es,
         "%lld more tokens do not fit in the cache of %lld (%lld "
         "used)",
         (long long)n, (long long)s->capacity, (long long)s->length);
    return -1;
  }
  if (trace && s->length > 0) {
    fail(err, es, "a trace is only made of the first call");
    return -1;
  }
  if (trace && model_trace_alloc(trace, c->n_layers, n, c->heads_q, c->heads_kv,
                                 c->head_dim, 1)) {
    fail(err, es, "out of memory for the trace");
    return -1;
  }
  int64_t rows = s->length == 0 ? n : 1;
  if (acts_alloc(&a, c, rows)) {
    fail(err, es, "out of memory");
    goto bad;
  }
  if (s->length == 0) {
    if (embed(s->m, ids, n, a.x, err, es) || prefill(s, &a, n, trace, err, es))
      goto bad;
    s->length = n;
  } else {
    for (int64_t i = 0; i < n; i++) {
      if (embed(s->m, ids + i, 1, a.x, err, es) || step(s, &a, err, es))
        goto bad;
      s->length++;
    }
  }
  if (logits)
    head(s->m, &a, rows, logits);
  free(a.buf);
  return 0;
bad:
  free(a.buf);
  if (trace)
    model_trace_free(trace);
  return -1;
}

/* ---- sampling ----------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t llama_sample(const float *logits, int64_t n, float temp,
                     uint64_t *rng) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (logits[i] > logits[best])
      best = i;
  if (!(temp > 0.0f))
    return (int32_t)best;
  double sum = 0, mx = logits[best];
  for (int64_t i = 0; i < n; i++)
    sum += exp(((double)logits[i] - mx) / temp);
  double r = (double)(splitmix64(rng) >> 11) * 0x1.0p-53 * sum, acc = 0;
  for (int64_t i = 0; i < n; i++) {
    acc += exp(((double)logits[i] - mx) / temp);
    if (acc > r)
      return (int32_t)i;
  }
  return (int32_t)best;
}

/* ---- entry points for the tools ----------------------------------------- */

int decoder_tokenize(const char *weights, const char *text, int32_t **ids,
                     int64_t *n, char *err, size_t es) {
  char file[4096], e[512] = "";
  gguf_file *f = NULL;
  bpe *b = NULL;
  *ids = NULL;
  *n = 0;
  if (!text) {
    fail(err, es, "no text");
    return -1;
  }
  if (model_locate(MODEL_DECODER, weights, file, sizeof file, err, es) ||
      gguf_open(file, &f, err, es))
    return -1;
  int rc = bpe_from_gguf(f, &b, e, sizeof e);
  if (rc == 0)
    rc = bpe_encode(b, text, strlen(text), 1, ids, n, e, sizeof e);
  if (rc)
    fail(err, es, "%s: %s", file, e);
  bpe_free(b);
  gguf_close(f);
  return rc;
}

/* Display text of a token: its bytes as UTF-8 (U+FFFD for a piece of a
 * character), one leading space dropped, "\n" for a newline, and "␣"
 * for a token that would show nothing. */
static int token_label(const bpe *b, int32_t id, char *out, size_t size) {
  const char *s;
  size_t len, k = 0;
  if (bpe_token_bytes(b, id, &s, &len))
    return -1;
  if (len > 0 && s[0] == ' ' && len > 1)
    s++, len--;
  for (size_t i = 0; i < len && k + 8 < size;) {
    uint32_t cp;
    i += utf8_decode(s + i, len - i, &cp);
    if (cp == '\n') {
      out[k++] = '\\';
      out[k++] = 'n';
    } else if (cp < 32 || cp == 127) {
      k += (size_t)snprintf(out + k, size - k, "\\x%02x", (unsigned)cp);
    } else {
      char u[4];
      size_t m = utf8_encode(cp, u);
      memcpy(out + k, u, m);
      k += m;
    }
  }
  out[k] = 0;
  if (k == 0 || (k == 1 && out[0] == ' '))
    snprintf(out, size, "\xe2\x90\xa3"); /* U+2423 OPEN BOX */
  return 0;
}

int decoder_trace(const char *weights, const char *text, int threads,
                  model_trace *trace, char *err, size_t es) {
  llama *m = NULL;
  llama_session *s = NULL;
  int32_t *ids = NULL;
  int64_t n = 0;
  int rc = -1;
  memset(trace, 0, sizeof *trace);
  if (!text) {
    fail(err, es, "no text");
    return -1;
  }
  if (llama_load(weights, threads, &m, err, es))
    return -1;
  char e[512] = "";
  if (bpe_encode(m->tok, text, strlen(text), 1, &ids, &n, e, sizeof e)) {
    fail(err, es, "%s", e);
    goto done;
  }
  if (n == 0) {
    fail(err, es, "the text gives no tokens");
    goto done;
  }
  if (llama_session_create(m, n, &s, err, es) ||
      llama_forward(s, ids, n, NULL, trace, err, es))
    goto done;
  for (int64_t i = 0; i < n; i++) {
    char label[256];
    if (token_label(m->tok, ids[i], label, sizeof label) ||
        model_trace_set_token(trace, i, label)) {
      fail(err, es, "out of memory");
      model_trace_free(trace);
      goto done;
    }
  }
  snprintf(trace->model, sizeof trace->model, "decoder");
  rc = 0;
done:
  free(ids);
  llama_session_free(s);
  llama_free(m);
  return rc;
}

void llama_set_blas_threads(int threads) {
  if (threads > 0)
    openblas_set_num_threads(threads);
}
